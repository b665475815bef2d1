#!/usr/bin/env python3
"""Converts MediaPipe's face models (.tflite, Apache-2.0) into safetensors that
src/nn/graph.rs runs with libtorch.

Reads the models out of the `mediapipe` wheel (0.10.14 is the last one that carries them)
and writes, per model, one safetensors file: the weights (float16 as in the .tflite, whose
DEQUANTIZE ops are folded; convolution filters already in libtorch's layout) and, in its
metadata under "graph", the operator list with every option resolved (explicit paddings,
shapes, axes), so the runtime needs no TFLite schema. Also writes manifest.json with the
source wheel and file, licence, checksums and the command.

    pip download --no-deps mediapipe==0.10.14 -d /tmp/mp   # any platform's wheel
    pip install tflite flatbuffers numpy safetensors
    python3 tools/mediapipe/convert.py --wheel /tmp/mp/mediapipe-0.10.14-*.whl --out models/mediapipe
"""

import argparse
import hashlib
import json
import os
import sys
import zipfile

import numpy as np

try:
    import tflite
    from flatbuffers import flexbuffers
    from safetensors.numpy import save_file
except ImportError as err:  # pragma: no cover
    sys.exit(f"convert.py needs the packages tflite, flatbuffers and safetensors: {err}")

MODELS = {
    # name: path inside the wheel
    "face_detection_short_range": "mediapipe/modules/face_detection/face_detection_short_range.tflite",
    "face_landmark_with_attention": "mediapipe/modules/face_landmark/face_landmark_with_attention.tflite",
}

BUILTIN_NAMES = {v: k for k, v in tflite.BuiltinOperator.__dict__.items() if not k.startswith("_")}
ACTIVATIONS = {0: "none", 1: "relu", 3: "relu6"}


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def same_padding(size, kernel, stride, dilation):
    """TFLite's SAME padding: (before, after); the odd pixel goes after."""
    out = -(-size // stride)
    effective = (kernel - 1) * dilation + 1
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


class Converter:
    def __init__(self, name, data):
        self.name = name
        self.model = tflite.Model.GetRootAsModel(data, 0)
        if self.model.SubgraphsLength() != 1:
            raise SystemExit(f"{name}: expected one subgraph, found {self.model.SubgraphsLength()}")
        self.graph = self.model.Subgraphs(0)
        self.constants = {}  # tensor index -> numpy array (tflite layout)
        self.weights = {}  # key -> numpy array written to safetensors
        self.ops = []
        for index in range(self.graph.TensorsLength()):
            tensor = self.graph.Tensors(index)
            buffer = self.model.Buffers(tensor.Buffer())
            if buffer.DataLength() == 0:
                continue
            dtype = {0: np.float32, 1: np.float16, 2: np.int32, 4: np.int64}.get(tensor.Type())
            if dtype is None:
                raise SystemExit(f"{name}: tensor {index} has unsupported type {tensor.Type()}")
            array = np.frombuffer(buffer.DataAsNumpy().tobytes(), dtype=dtype)
            self.constants[index] = array.reshape(self.shape(index))

    def shape(self, index):
        tensor = self.graph.Tensors(index)
        return [int(v) for v in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else []

    def tensor_name(self, index):
        return self.graph.Tensors(index).Name().decode()

    def weight(self, index, array):
        key = f"t{index}"
        self.weights[key] = np.ascontiguousarray(array)
        return key

    def operand(self, index, activation_rank):
        """A value reference: a weight key for constants (elementwise constants are
        reshaped for NCHW when the other operand is a 4-D activation), else the index."""
        if index not in self.constants:
            return index
        array = self.constants[index]
        if activation_rank == 4:
            array = array.reshape([1] * (4 - array.ndim) + list(array.shape)).transpose(0, 3, 1, 2)
        return self.weight(index, array)

    def convert(self):
        g = self.graph
        for i in range(g.OperatorsLength()):
            op = g.Operators(i)
            code = self.model.OperatorCodes(op.OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            kind = code.CustomCode().decode() if code.CustomCode() else BUILTIN_NAMES[builtin]
            ins = [int(v) for v in op.InputsAsNumpy()]
            outs = [int(v) for v in op.OutputsAsNumpy()]
            handler = getattr(self, "op_" + kind, None)
            if handler is None:
                raise SystemExit(f"{self.name}: operator {kind} (#{i}) is not supported")
            entry = handler(op, ins, outs)
            if entry is not None:
                entry["out"] = outs[0]
                self.ops.append(entry)
        inputs = [int(v) for v in g.InputsAsNumpy()]
        outputs = {self.tensor_name(int(v)): int(v) for v in g.OutputsAsNumpy()}
        return {
            "format": 1,
            "inputs": [{"id": v, "shape": self.shape(v)} for v in inputs],
            "outputs": [{"name": k, "id": v, "shape": self.shape(v)} for k, v in outputs.items()],
            "ops": self.ops,
        }

    def refinement(self):
        """Which mesh points the lips and eye outputs refine: the same index lists as the
        model's attention crops (MediaPipe's LandmarksRefinementCalculator options in
        tensors_to_face_landmarks_with_attention.pbtxt), read from those ops."""
        crops = {op["left"]: op["subset"] for op in self.ops if op["op"] == "landmarks_to_matrix"}
        if not crops:
            return None
        # The crops are named by the landmark their rotation starts at: 61 is the left
        # mouth corner, 33 and 362 the corners of the left and right eye (image sides).
        try:
            return {"lips": crops[61], "left_eye": crops[33], "right_eye": crops[362]}
        except KeyError as err:
            raise SystemExit(f"{self.name}: unexpected attention crops {sorted(crops)}: {err}")

    # --- operators -------------------------------------------------------------------

    def op_DEQUANTIZE(self, op, ins, outs):
        if ins[0] not in self.constants:
            raise SystemExit(f"{self.name}: DEQUANTIZE of a non-constant tensor")
        # float16 weights stay float16 in the file; the runtime computes in float32.
        self.constants[outs[0]] = self.constants[ins[0]]
        return None

    def options(self, op, cls):
        table = op.BuiltinOptions()
        options = cls()
        options.Init(table.Bytes, table.Pos)
        return options

    def op_CONV_2D(self, op, ins, outs, depthwise=False):
        o = self.options(op, tflite.DepthwiseConv2DOptions if depthwise else tflite.Conv2DOptions)
        filt = self.constants[ins[1]]  # conv: O,KH,KW,I   depthwise: 1,KH,KW,C*M
        _, h, w, c = self.shape(ins[0])
        kh, kw = filt.shape[1], filt.shape[2]
        sh, sw = o.StrideH(), o.StrideW()
        dh, dw = o.DilationHFactor(), o.DilationWFactor()
        if o.Padding() == tflite.Padding.SAME:
            pad = [*same_padding(h, kh, sh, dh), *same_padding(w, kw, sw, dw)]
        else:
            pad = [0, 0, 0, 0]
        if depthwise:
            weight = filt.transpose(3, 0, 1, 2)  # C*M,1,KH,KW
            groups = c
        else:
            weight = filt.transpose(0, 3, 1, 2)  # O,I,KH,KW
            groups = 1
        entry = {
            "op": "conv2d",
            "input": ins[0],
            "weight": self.weight(ins[1], weight),
            "stride": [sh, sw],
            "dilation": [dh, dw],
            "pad": pad,
            "groups": groups,
            "act": ACTIVATIONS[o.FusedActivationFunction()],
        }
        if len(ins) > 2 and ins[2] >= 0:
            entry["bias"] = self.weight(ins[2], self.constants[ins[2]])
        return entry

    def op_DEPTHWISE_CONV_2D(self, op, ins, outs):
        return self.op_CONV_2D(op, ins, outs, depthwise=True)

    def op_MAX_POOL_2D(self, op, ins, outs):
        o = self.options(op, tflite.Pool2DOptions)
        _, h, w, _ = self.shape(ins[0])
        kh, kw, sh, sw = o.FilterHeight(), o.FilterWidth(), o.StrideH(), o.StrideW()
        if o.Padding() == tflite.Padding.SAME:
            pad = [*same_padding(h, kh, sh, 1), *same_padding(w, kw, sw, 1)]
        else:
            pad = [0, 0, 0, 0]
        return {
            "op": "max_pool",
            "input": ins[0],
            "kernel": [kh, kw],
            "stride": [sh, sw],
            "pad": pad,
            "act": ACTIVATIONS[o.FusedActivationFunction()],
        }

    def elementwise(self, kind, op, ins, cls):
        o = self.options(op, cls)
        rank = max(len(self.shape(v)) for v in ins if v not in self.constants)
        return {
            "op": kind,
            "a": self.operand(ins[0], rank),
            "b": self.operand(ins[1], rank),
            "act": ACTIVATIONS[o.FusedActivationFunction()],
        }

    def op_ADD(self, op, ins, outs):
        return self.elementwise("add", op, ins, tflite.AddOptions)

    def op_MUL(self, op, ins, outs):
        return self.elementwise("mul", op, ins, tflite.MulOptions)

    def op_RELU(self, op, ins, outs):
        return {"op": "relu", "input": ins[0]}

    def op_PRELU(self, op, ins, outs):
        return {"op": "prelu", "input": ins[0], "alpha": self.operand(ins[1], len(self.shape(ins[0])))}

    def op_PAD(self, op, ins, outs):
        pads = self.constants[ins[1]].astype(int).tolist()  # per NHWC dim: [before, after]
        return {"op": "pad", "input": ins[0], "pads": pads}

    def op_RESHAPE(self, op, ins, outs):
        return {"op": "reshape", "input": ins[0], "shape": self.shape(outs[0])}

    def op_CONCATENATION(self, op, ins, outs):
        o = self.options(op, tflite.ConcatenationOptions)
        rank = len(self.shape(outs[0]))
        return {
            "op": "concat",
            "inputs": ins,
            "axis": o.Axis() % rank,
            "rank": rank,
            "act": ACTIVATIONS[o.FusedActivationFunction()],
        }

    def op_STRIDED_SLICE(self, op, ins, outs):
        o = self.options(op, tflite.StridedSliceOptions)
        shape = self.shape(ins[0])
        begin, end, strides = (self.constants[v].astype(int).tolist() for v in ins[1:4])
        if o.EllipsisMask() or o.NewAxisMask() or o.ShrinkAxisMask() or any(s != 1 for s in strides):
            raise SystemExit(f"{self.name}: STRIDED_SLICE with masks or strides is not supported")
        for axis in range(len(shape)):
            if o.BeginMask() >> axis & 1:
                begin[axis] = 0
            if o.EndMask() >> axis & 1:
                end[axis] = shape[axis]
            if begin[axis] < 0:
                begin[axis] += shape[axis]
            end[axis] = min(end[axis] if end[axis] >= 0 else end[axis] + shape[axis], shape[axis])
        if self.shape(outs[0]) != [e - b for b, e in zip(begin, end)]:
            raise SystemExit(f"{self.name}: STRIDED_SLICE shape does not match its output")
        return {"op": "slice", "input": ins[0], "begin": begin, "end": end}

    def custom_options(self, op):
        if op.CustomOptionsLength() == 0:
            return {}
        return flexbuffers.Loads(bytes(op.CustomOptionsAsNumpy()))

    def op_Landmarks2TransformMatrix(self, op, ins, outs):
        o = self.custom_options(op)
        subset = list(o["subset_idxs"])
        return {
            "op": "landmarks_to_matrix",
            "input": ins[0],
            "left": o["left_rotation_idx"],
            "right": o["right_rotation_idx"],
            "target_rotation": o["target_rotation_radians"],
            "subset": subset,
            "output_size": [o["output_height"], o["output_width"]],
            "scale": [o["scale_y"], o["scale_x"]],
        }

    def op_TransformTensorBilinear(self, op, ins, outs):
        o = self.custom_options(op)
        return {
            "op": "transform_tensor",
            "input": ins[0],
            "matrix": ins[1],
            "output_size": [o["output_height"], o["output_width"]],
        }

    def op_TransformLandmarks(self, op, ins, outs):
        return {"op": "transform_landmarks", "input": ins[0], "matrix": ins[1]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", required=True, help="the mediapipe wheel (0.10.14 or earlier)")
    parser.add_argument("--out", default="models/mediapipe")
    args = parser.parse_args()
    wheel_name = os.path.basename(args.wheel)
    with open(args.wheel, "rb") as f:
        wheel_sha = sha256(f.read())
    os.makedirs(args.out, exist_ok=True)
    manifest = {
        "name": "MediaPipe face detection (BlazeFace short range) and face landmarks with attention",
        "licence": "Apache-2.0 (see LICENSE in this folder)",
        "source": {"package": "mediapipe", "wheel": wheel_name, "wheel_sha256": wheel_sha},
        "conversion": "python3 tools/mediapipe/convert.py --wheel " + wheel_name + " --out " + args.out,
        "files": {},
    }
    with zipfile.ZipFile(args.wheel) as wheel:
        for name, member in MODELS.items():
            try:
                data = wheel.read(member)
            except KeyError:
                sys.exit(f"{wheel_name} has no {member}: use mediapipe 0.10.14 or earlier")
            print(f"converting {member} ({len(data)} bytes)")
            converter = Converter(name, data)
            graph = converter.convert()
            path = os.path.join(args.out, name + ".safetensors")
            metadata = {"graph": json.dumps(graph, separators=(",", ":"))}
            refinement = converter.refinement()
            if refinement:
                metadata["refinement"] = json.dumps(refinement, separators=(",", ":"))
            save_file(converter.weights, path, metadata=metadata)
            with open(path, "rb") as f:
                out_sha = sha256(f.read())
            manifest["files"][name + ".safetensors"] = {
                "from": member,
                "tflite_sha256": sha256(data),
                "sha256": out_sha,
                "operators": len(graph["ops"]),
                "weights": len(converter.weights),
            }
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
