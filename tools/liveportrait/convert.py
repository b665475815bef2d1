#!/usr/bin/env python3
"""Converts LivePortrait's official checkpoints into a vasafacegen model bundle.

    python3 tools/liveportrait/convert.py \
        --checkpoints pretrained_weights/liveportrait/base_models_and_retargeting \
        --out models/liveportrait-bundle [--config sizes.json] [--force]

The checkpoint folder holds the five official files (appearance_feature_extractor.pth,
motion_extractor.pth, warping_module.pth, spade_generator.pth,
stitching_retargeting_module.pth; the last may sit in a sibling `retargeting_models`
folder, as in the official download). Each is a torch.save zip archive holding a
pickled state dict; it is read here with Python's standard library alone, allowing only
the handful of names a state dict uses (no code from the file runs, torch not needed). The bundle gets one
safetensors file per component with the official key names (the stitching module's
entries flattened to `<entry>.<key>`, its DDP `module.` prefixes removed) and a
manifest.json: format, components, network sizes, SHA-256 of every source file, licence.

Needs only Python 3. Nothing is downloaded.
"""

import argparse
import collections
import hashlib
import json
import os
import pickle
import shutil
import struct
import sys
import tempfile
import zipfile

FORMAT = "vasafacegen-bundle"
VERSION = 1
COMPONENTS = [
    "appearance_feature_extractor",
    "motion_extractor",
    "warping_module",
    "spade_generator",
    "stitching_retargeting_module",
]
STITCHING_ENTRIES = ["retarget_shoulder", "retarget_mouth", "retarget_eye"]
LICENCE = (
    "LivePortrait weights: MIT (KwaiVGI/LivePortrait); see its LICENSE, which also "
    "names the licences of the models it builds on (e.g. InsightFace for face analysis, "
    "not part of this bundle)"
)

# src/config/models.yaml of the official release; the motion extractor's backbone is
# convnextv2_tiny.
OFFICIAL = {
    "appearance_feature_extractor_params": {
        "image_channel": 3, "block_expansion": 64, "num_down_blocks": 2,
        "max_features": 512, "reshape_channel": 32, "reshape_depth": 16, "num_resblocks": 6,
    },
    "motion_extractor_params": {
        "num_kp": 21, "num_bins": 66, "depths": [3, 3, 9, 3], "dims": [96, 192, 384, 768],
    },
    "warping_module_params": {
        "num_kp": 21, "block_expansion": 64, "max_features": 512, "num_down_blocks": 2,
        "reshape_channel": 32, "estimate_occlusion_map": True,
        "dense_motion_params": {
            "block_expansion": 32, "max_features": 1024, "num_blocks": 5,
            "reshape_depth": 16, "compress": 4,
        },
    },
    "spade_generator_params": {
        "upscale": 2, "block_expansion": 64, "max_features": 512, "num_down_blocks": 2,
        "out_channels": 64,
    },
    "stitching_retargeting_module_params": {
        "stitching": {"input_size": 126, "hidden_sizes": [128, 128, 64], "output_size": 65},
        "lip": {"input_size": 65, "hidden_sizes": [128, 128, 64], "output_size": 63},
        "eye": {"input_size": 66, "hidden_sizes": [256, 256, 128, 128, 64], "output_size": 63},
    },
}

# torch storage class -> (safetensors dtype, bytes per element)
STORAGES = {
    "FloatStorage": ("F32", 4), "HalfStorage": ("F16", 2), "BFloat16Storage": ("BF16", 2),
    "DoubleStorage": ("F64", 8), "LongStorage": ("I64", 8), "IntStorage": ("I32", 4),
}


class StoredTensor:
    """A tensor as the checkpoint describes it: dtype, shape and its bytes."""

    def __init__(self, dtype, shape, data):
        self.dtype, self.shape, self.data = dtype, shape, data


class StateDictUnpickler(pickle.Unpickler):
    """Reads torch.save's data.pkl, allowing only what a state dict needs."""

    def __init__(self, file, archive, prefix):
        super().__init__(file)
        self.archive, self.prefix = archive, prefix

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return self.rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return lambda data, requires_grad, hooks: data
        if module == "torch" and name in STORAGES:
            return name
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a state dict")

    def persistent_load(self, pid):
        kind, storage, key, _location, numel = pid
        if kind != "storage" or storage not in STORAGES:
            raise pickle.UnpicklingError(f"unsupported storage {pid!r}")
        data = self.archive.read(f"{self.prefix}/data/{key}")
        dtype, size = STORAGES[storage]
        if len(data) != numel * size:
            raise pickle.UnpicklingError(f"storage {key}: {len(data)} bytes, expected {numel * size}")
        return (dtype, size, data)

    @staticmethod
    def rebuild_tensor(storage, offset, shape, stride, *_):
        dtype, size, data = storage
        numel = 1
        for n in shape:
            numel *= n
        expected, step = [], 1
        for n in reversed(shape):
            expected.insert(0, step)
            step *= n
        if numel > 1 and list(stride) != expected:
            raise pickle.UnpicklingError(f"non-contiguous tensor {shape} stride {stride}")
        return StoredTensor(dtype, list(shape), data[offset * size:(offset + numel) * size])


def read_checkpoint(path):
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise ValueError("no data.pkl inside (not a torch.save archive)")
        prefix = pickles[0][: -len("/data.pkl")]
        with archive.open(pickles[0]) as f:
            return StateDictUnpickler(f, archive, prefix).load()


def fail(message):
    print(f"convert.py: {message}", file=sys.stderr)
    sys.exit(1)


def read_config(path):
    """Network sizes from a JSON file in models.yaml's schema (at the top level or under
    `reduced_model_params` / `model_params`), the backbone's depths and dims from
    `motion_extractor_backbone` when given; default: the official sizes."""
    if path is None:
        return OFFICIAL
    with open(path) as f:
        data = json.load(f)
    params = data.get("reduced_model_params") or data.get("model_params") or data
    config = json.loads(json.dumps(params))
    missing = [k for k in OFFICIAL if k not in config]
    if missing:
        fail(f"{path}: no {', '.join(missing)} (expected models.yaml's schema)")
    motion = config["motion_extractor_params"]
    backbone = data.get("motion_extractor_backbone", {})
    motion.setdefault("depths", backbone.get("depths", OFFICIAL["motion_extractor_params"]["depths"]))
    motion.setdefault("dims", backbone.get("dims", OFFICIAL["motion_extractor_params"]["dims"]))
    motion.setdefault("num_bins", backbone.get("num_bins", 66))
    motion.pop("backbone", None)
    config["spade_generator_params"].setdefault("out_channels", 64)
    return config


def find_checkpoint(folder, name):
    for candidate in (os.path.join(folder, name),
                      os.path.join(folder, "..", "retargeting_models", name)):
        if os.path.isfile(candidate):
            return os.path.normpath(candidate)
    fail(f"{os.path.join(folder, name)}: missing (the official {name} is needed)")


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_state(path, component):
    try:
        state = read_checkpoint(path)
    except Exception as err:  # a truncated or foreign file
        fail(f"{path}: not a readable PyTorch checkpoint ({err})")
    if not isinstance(state, dict):
        fail(f"{path}: expected a state dict, found {type(state).__name__}")
    if component != "stitching_retargeting_module":
        return state
    flat = {}
    for entry in STITCHING_ENTRIES:
        if entry not in state or not isinstance(state[entry], dict):
            fail(f"{path}: entry {entry} is missing (expected {', '.join(STITCHING_ENTRIES)})")
        for key, tensor in state[entry].items():
            flat[f"{entry}.{key.replace('module.', '')}"] = tensor
    return flat


def write_safetensors(tensors, path):
    header, offset, blobs = {}, 0, []
    for key in sorted(tensors):
        tensor = tensors[key]
        if not isinstance(tensor, StoredTensor):
            fail(f"{key}: not a tensor ({type(tensor).__name__})")
        size = len(tensor.data)
        blobs.append(tensor.data)
        header[key] = {"dtype": tensor.dtype, "shape": tensor.shape,
                       "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", required=True, help="folder of the official .pth files")
    parser.add_argument("--out", required=True, help="bundle folder to create")
    parser.add_argument("--config", help="network sizes (JSON, models.yaml schema); default: official")
    parser.add_argument("--force", action="store_true", help="replace an existing bundle")
    args = parser.parse_args()

    if os.path.exists(args.out) and os.listdir(args.out) and not args.force:
        fail(f"{args.out} exists; pass --force to replace it")
    config = read_config(args.config)
    staging = tempfile.mkdtemp(prefix=".bundle-", dir=os.path.dirname(os.path.abspath(args.out)))
    sources, components = {}, {}
    for i, component in enumerate(COMPONENTS):
        path = find_checkpoint(args.checkpoints, component + ".pth")
        print(f"[{i + 1}/{len(COMPONENTS)}] {component}: reading {path}", flush=True)
        state = load_state(path, component)
        write_safetensors(state, os.path.join(staging, component + ".safetensors"))
        sources[os.path.basename(path)] = {"sha256": sha256(path), "bytes": os.path.getsize(path)}
        components[component] = component + ".safetensors"
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "components": components,
        "liveportrait_config": config,
        "sources": sources,
        "licence": LICENCE,
        "converted_by": "tools/liveportrait/convert.py",
    }
    with open(os.path.join(staging, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    os.rename(staging, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
