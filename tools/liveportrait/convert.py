#!/usr/bin/env python3
"""Converts LivePortrait's official checkpoints (and, optionally, JoyVASA's motion
generator) into a vasafacegen model bundle.

    python3 tools/liveportrait/convert.py \
        --checkpoints pretrained_weights/liveportrait/base_models_and_retargeting \
        --out models/liveportrait-bundle [--config sizes.json] [--force] \
        [--motion-generator pretrained_weights/JoyVASA/motion_generator/motion_generator_hubert_chinese.pt \
         --motion-template pretrained_weights/JoyVASA/motion_template/motion_template.pkl \
         [--hubert-config pretrained_weights/chinese-hubert-base/config.json] \
         [--positional-encoding bug|fixed]] \
        [--ditto-lmdm pretrained_weights/ditto_pytorch/models/lmdm_v0.4_hubert.pth \
         --ditto-hubert pretrained_weights/hubert-large-ls960-ft [--ditto-heads 8]]

The checkpoint folder holds the five official files (appearance_feature_extractor.pth,
motion_extractor.pth, warping_module.pth, spade_generator.pth,
stitching_retargeting_module.pth; the last may sit in a sibling `retargeting_models`
folder, as in the official download). Each is a torch.save zip archive holding a
pickled state dict; it is read here with Python's standard library alone, allowing only
the handful of names a state dict uses (no code from the file runs, torch not needed). The bundle gets one
safetensors file per component with the official key names (the stitching module's
entries flattened to `<entry>.<key>`, its DDP `module.` prefixes removed) and a
manifest.json: format and version, one section per model (`renderers.liveportrait`
with the network sizes and its component files), SHA-256 of every source file, licence.

With --motion-generator the bundle also gets JoyVASA's motion generator: the state dict
of the `motion_generator_*.pt` container (a pickle of {'args': argparse.Namespace,
'model': state dict, 'iter'}; only the args the official loader reads are kept) as
motion_generator.safetensors, the motion template pickle (a dict of numpy arrays) as
motion_template.safetensors, and a section `motion_generators.joyvasa` in the manifest
with the generator's sizes and those two files. The HuBERT sizes come from --hubert-config (transformers' config.json of
chinese-hubert-base, or any JSON with those fields at the top or under
`hubert_config`); default: chinese-hubert-base. --positional-encoding chooses how the
denoiser encodes frame positions: `bug` (default) as the public weights were trained,
`fixed` as the reference code has done since its commit 74290f6.

With --ditto-lmdm the bundle also gets Ditto's networks: the `model_state_dict` of the
LMDM checkpoint (its per-layer copies of the rotary frequencies included) as
ditto_lmdm.safetensors, and HuBERT-large from a HuggingFace folder (--ditto-hubert:
config.json and model.safetensors, HubertModel's keys with or without the `hubert.`
prefix of HubertForCTC, whose `lm_head` is dropped) as ditto_hubert.safetensors, in a
section `motion_generators.ditto` with the head count (--ditto-heads, 8 in the release:
the weights do not hold it) and the release's offline sampling settings (50 steps,
overlap 10). --ditto-cfg reads Ditto's cfg .pkl (a pickle of dicts, strings, numbers
and numpy arrays, read allowing nothing else) for the sampling steps, the window overlap
(into the online fields when the cfg is an online one) and the clip range
(`v_min_max_for_clip`); give it twice for the offline and the online cfg. The
checkpoint folder may also be Ditto's ditto_pytorch one (appearance_extractor.pth,
motion_extractor.pth, warp_network.pth, decoder.pth, stitch_network.pth, in it or in its
`models` folder): the same networks under other names.

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
# Version 2: one section per model (`renderers`, `motion_generators`), each with its
# config and its component files. The plugin still reads version 1 (one flat
# component list, `liveportrait_config`, `joyvasa`).
VERSION = 2
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
    "BoolStorage": ("BOOL", 1),
}

JOYVASA_LICENCE = (
    "JoyVASA motion generator: MIT (jdh-algo/JoyVASA); its audio encoder is "
    "TencentGameMate/chinese-hubert-base, see that model's card for its terms"
)

# transformers' HubertConfig of TencentGameMate/chinese-hubert-base (hubert-base).
HUBERT_BASE = {
    "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
    "intermediate_size": 3072, "conv_dim": [512] * 7, "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_stride": [5, 2, 2, 2, 2, 2, 2], "conv_bias": False, "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16, "layer_norm_eps": 1e-5, "feat_proj_layer_norm": True,
    "feat_extract_norm": "group", "do_stable_layer_norm": False,
}

DITTO_LICENCE = "Ditto (antgroup/ditto-talkinghead): Apache-2.0; HuBERT (facebook/hubert-large-ls960-ft): Apache-2.0"
# The motion generator's args the official loader and wrapper read.
JOYVASA_ARGS = ["motion_feat_dim", "n_motions", "n_prev_motions", "feature_dim",
                "n_diff_steps", "fps", "audio_model", "pad_mode"]


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


class Namespace:
    """Stands in for argparse.Namespace: pickle fills its __dict__."""


class ContainerUnpickler(StateDictUnpickler):
    """A training container (JoyVASA's train.py): also its argparse.Namespace of
    arguments, whose paths are pathlib objects (kept as strings)."""

    def find_class(self, module, name):
        if (module, name) == ("argparse", "Namespace"):
            return Namespace
        if module == "pathlib" and name in ("PosixPath", "WindowsPath", "PurePosixPath", "Path"):
            return lambda *parts: "/".join(str(p) for p in parts)
        return super().find_class(module, name)


def read_checkpoint(path, unpickler=StateDictUnpickler):
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise ValueError("no data.pkl inside (not a torch.save archive)")
        prefix = pickles[0][: -len("/data.pkl")]
        with archive.open(pickles[0]) as f:
            return unpickler(f, archive, prefix).load()


# numpy dtype string -> (safetensors dtype, bytes per element)
NUMPY_TYPES = {"f4": ("F32", 4), "f8": ("F64", 8), "f2": ("F16", 2)}


class NumpyDtype:
    def __init__(self, name, _align=False, _copy=True):
        if name not in NUMPY_TYPES:
            raise pickle.UnpicklingError(f"numpy dtype {name} is not supported")
        self.name, self.byteorder = name, "<"

    def __setstate__(self, state):
        self.byteorder = state[1]


class NumpyArray:
    def __init__(self, *_):
        self.tensor = None

    def __setstate__(self, state):
        _version, shape, dtype, fortran, data = state
        if dtype.byteorder == ">" or fortran and len(shape) > 1:
            raise pickle.UnpicklingError("big-endian or Fortran-ordered arrays are not supported")
        kind, size = NUMPY_TYPES[dtype.name]
        numel = 1
        for n in shape:
            numel *= n
        if len(data) != numel * size:
            raise pickle.UnpicklingError(f"array of shape {shape}: {len(data)} bytes")
        self.tensor = StoredTensor(kind, list(shape), bytes(data))


class TemplateUnpickler(pickle.Unpickler):
    """Reads a pickled dict of numpy arrays, allowing nothing else."""

    def find_class(self, module, name):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            return lambda cls, shape, tag: NumpyArray()
        if (module, name) == ("numpy", "ndarray"):
            return NumpyArray
        if (module, name) == ("numpy", "dtype"):
            return NumpyDtype
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a motion template")


def read_template(path):
    try:
        with open(path, "rb") as f:
            data = TemplateUnpickler(f).load()
    except Exception as err:
        detail = " ".join(str(err).split())
        fail(f"{path}: not a motion template (a pickled dict of numpy arrays): {detail}")
    if not isinstance(data, dict):
        fail(f"{path}: expected a dict of arrays, found {type(data).__name__}")
    tensors = {}
    for key, value in data.items():
        if isinstance(value, NumpyArray) and value.tensor is not None:
            tensors[key] = value.tensor
    needed = [f"{s}_{n}" for n in ("scale", "t", "pitch", "yaw", "roll") for s in ("min", "max")]
    needed += ["mean_exp", "std_exp"]
    missing = [k for k in needed if k not in tensors]
    if missing:
        fail(f"{path}: no {', '.join(missing)} (not a JoyVASA motion template?)")
    return tensors


def read_hubert_config(path):
    if path is None:
        return dict(HUBERT_BASE)
    try:
        with open(path) as f:
            data = json.load(f)
    except Exception as err:
        fail(f"{path}: not a readable JSON file ({err})")
    data = data.get("hubert_config", data)
    missing = [k for k in HUBERT_BASE if k not in data]
    if missing:
        fail(f"{path}: no {', '.join(missing)} (expected transformers' HubertConfig fields)")
    return {k: data[k] for k in HUBERT_BASE}


def read_motion_generator(path, hubert, positional_encoding):
    """The state dict and the `joyvasa` manifest entry of a motion_generator_*.pt."""
    try:
        container = read_checkpoint(path, ContainerUnpickler)
    except Exception as err:
        fail(f"{path}: not a readable JoyVASA motion generator ({err})")
    if not isinstance(container, dict) or "model" not in container or "args" not in container:
        fail(f"{path}: expected a dict with 'args' and 'model' (JoyVASA's train.py container)")
    args = vars(container["args"]) if isinstance(container["args"], Namespace) else container["args"]
    if not isinstance(args, dict):
        fail(f"{path}: 'args' is {type(args).__name__}, expected an argparse.Namespace")
    missing = [k for k in JOYVASA_ARGS if k not in args]
    if missing:
        fail(f"{path}: args lack {', '.join(missing)}")
    if not str(args["audio_model"]).startswith("hubert"):
        fail(f"{path}: audio_model {args['audio_model']!r} is not supported (HuBERT only)")
    state = container["model"]
    if not isinstance(state, dict) or not all(isinstance(v, StoredTensor) for v in state.values()):
        fail(f"{path}: 'model' is not a state dict of tensors")
    config = {k: args[k] for k in JOYVASA_ARGS if k not in ("audio_model", "pad_mode")}
    config["positional_encoding"] = positional_encoding
    config["hubert"] = hubert
    return state, config


def read_lmdm(path):
    """The state dict of an LMDM checkpoint ({'model_state_dict': ...})."""
    try:
        container = read_checkpoint(path)
    except Exception as err:
        fail(f"{path}: not a readable Ditto LMDM checkpoint ({err})")
    if not isinstance(container, dict) or "model_state_dict" not in container:
        fail(f"{path}: expected a dict with 'model_state_dict' (Ditto's LMDM checkpoint)")
    state = container["model_state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, StoredTensor) for v in state.values()):
        fail(f"{path}: 'model_state_dict' is not a state dict of tensors")
    for key in ("input_projection.weight", "final_layer.weight", "null_cond_embed"):
        if key not in state:
            fail(f"{path}: no {key} (not an LMDM MotionDecoder?)")
    return state


SAFETENSORS_DTYPES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "BOOL": 1, "U8": 1}


def read_safetensors(path):
    """{key: StoredTensor} of a safetensors file, read with the standard library."""
    try:
        with open(path, "rb") as f:
            size = struct.unpack("<Q", f.read(8))[0]
            if size > 100 << 20:
                raise ValueError(f"header of {size} bytes")
            header = json.loads(f.read(size))
            body = f.read()
    except Exception as err:
        fail(f"{path}: not a readable safetensors file ({err})")
    tensors = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        dtype, shape, (start, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
        numel = 1
        for n in shape:
            numel *= n
        if dtype not in SAFETENSORS_DTYPES or end - start != numel * SAFETENSORS_DTYPES[dtype] or end > len(body):
            fail(f"{path}: tensor {key} is damaged ({dtype}, {shape}, bytes {start}..{end})")
        tensors[key] = StoredTensor(dtype, list(shape), body[start:end])
    return tensors


def read_ditto_hubert(folder):
    """HuBERT-large's state dict (HubertModel keys) and sizes from a HuggingFace folder."""
    config = read_hubert_config(os.path.join(folder, "config.json"))
    if config.get("feat_extract_norm") != "layer" or not config.get("do_stable_layer_norm"):
        fail(f"{folder}/config.json: not a HuBERT-large layout (feat_extract_norm 'layer' with do_stable_layer_norm)")
    weights = os.path.join(folder, "model.safetensors")
    if not os.path.isfile(weights):
        fail(f"{weights}: missing (a HuggingFace folder in safetensors format is needed)")
    state = {}
    for key, tensor in read_safetensors(weights).items():
        if key.startswith("lm_head."):
            continue
        state[key[len("hubert."):] if key.startswith("hubert.") else key] = tensor
    return state, config, weights


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


# Ditto's ditto_pytorch release names LivePortrait's networks its own way (same
# architectures and key names).
DITTO_NAMES = {
    "appearance_feature_extractor": "appearance_extractor",
    "motion_extractor": "motion_extractor",
    "warping_module": "warp_network",
    "spade_generator": "decoder",
    "stitching_retargeting_module": "stitch_network",
}


def find_checkpoint(folder, component):
    name = component + ".pth"
    ditto = DITTO_NAMES[component] + ".pth"
    for candidate in (os.path.join(folder, name),
                      os.path.join(folder, "..", "retargeting_models", name),
                      os.path.join(folder, ditto),
                      os.path.join(folder, "models", ditto)):
        if os.path.isfile(candidate):
            return os.path.normpath(candidate)
    fail(f"{os.path.join(folder, name)}: missing (the official {name}, or Ditto's {ditto}, is needed)")


class NumpyScalar:
    """A numpy scalar (numpy.core.multiarray.scalar(dtype, bytes)) as a Python float."""

    def __new__(cls, dtype, data=b""):
        if dtype.name not in ("f4", "f8"):
            raise pickle.UnpicklingError(f"numpy scalar of dtype {dtype.name} is not supported")
        return struct.unpack("<f" if dtype.name == "f4" else "<d", data)[0]


class DittoCfgUnpickler(pickle.Unpickler):
    """Reads Ditto's cfg .pkl: dicts, lists, strings and numbers, numpy arrays and float
    scalars; nothing else (no code from the file runs)."""

    def find_class(self, module, name):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            if name == "_reconstruct":
                return lambda cls, shape, tag: NumpyArray()
            if name == "scalar":
                return NumpyScalar
        if (module, name) == ("numpy", "ndarray"):
            return NumpyArray
        if (module, name) == ("numpy", "dtype"):
            return NumpyDtype
        if (module, name) == ("_codecs", "encode"):
            # How protocol 2 pickles bytes: text in latin-1.
            return latin1_bytes
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a Ditto cfg")


def latin1_bytes(text, encoding="latin1"):
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"bytes in encoding {encoding!r} are not supported")
    return text.encode("latin1")


def array_rows(value, what, width):
    """The rows of a float32 array of `width` columns, as lists of floats."""
    if not isinstance(value, NumpyArray) or value.tensor is None:
        fail(f"{what}: not an array")
    t = value.tensor
    if t.dtype != "F32" or len(t.shape) != 2 or t.shape[1] != width:
        fail(f"{what}: expected float32 rows of {width} values, found {t.dtype} {t.shape}")
    values = struct.unpack(f"<{t.shape[0] * width}f", t.data)
    return [list(values[i * width:(i + 1) * width]) for i in range(t.shape[0])]


def read_ditto_cfg(path, motion_width):
    """The sampling and window settings of Ditto's cfg .pkl, as the bundle's config
    fields; what the bundle does not use is named on stdout."""
    try:
        with open(path, "rb") as f:
            cfg = DittoCfgUnpickler(f).load()
    except Exception as err:
        detail = " ".join(str(err).split())
        fail(f"{path}: not a Ditto cfg (a pickled dict of settings): {detail}")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("default_kwargs"), dict):
        fail(f"{path}: no default_kwargs (not a Ditto cfg?)")
    kwargs = cfg["default_kwargs"]
    a2m = cfg.get("audio2motion_cfg", {})
    if isinstance(a2m, dict) and a2m.get("w2f_type", "hubert") != "hubert":
        fail(f"{path}: audio features {a2m['w2f_type']!r}; only HuBERT's are supported")
    online = bool(kwargs.get("online_mode", False))
    out = {}
    for key, field, kind in (("sampling_timesteps", "sampling_steps", int), ("overlap_v2", "overlap", int)):
        if key in kwargs:
            value = kwargs[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < (1 if kind is int and key == "sampling_timesteps" else 0):
                fail(f"{path}: {key} is {value!r}, not a count")
            out[("online_" if online else "") + field] = value
    if kwargs.get("v_min_max_for_clip") is not None:
        rows = array_rows(kwargs["v_min_max_for_clip"], f"{path}: v_min_max_for_clip", motion_width)
        if len(rows) < 2:
            fail(f"{path}: v_min_max_for_clip has {len(rows)} rows, not the lows and highs")
        out["clip"] = [rows[0], rows[1]]
    if kwargs.get("smo_k_d", 3) != 3:
        fail(f"{path}: smo_k_d {kwargs['smo_k_d']!r}; the engine smooths over 3 frames as the release does")
    ignored = [k for k in ("delta_eye_arr", "ch_info", "ctrl_info", "overall_ctrl_info", "fix_kp_cond")
               if kwargs.get(k) not in (None, 0, {}, [])]
    if ignored:
        print(f"[+] ditto cfg: not used by the engine: {', '.join(ignored)} "
              "(blinks: use blinks=procedural; conditions come from the portrait)", flush=True)
    return out


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
    parser.add_argument("--motion-generator", help="JoyVASA motion_generator_*.pt to include")
    parser.add_argument("--motion-template", help="JoyVASA motion_template.pkl (with --motion-generator)")
    parser.add_argument("--hubert-config", help="HuBERT config.json; default: chinese-hubert-base")
    parser.add_argument("--positional-encoding", choices=["bug", "fixed"], default="bug",
                        help="denoiser frame positions: as trained (bug, default) or as the reference now does (fixed)")
    parser.add_argument("--ditto-lmdm", help="Ditto's lmdm_*.pth to include")
    parser.add_argument("--ditto-hubert", help="HuggingFace folder of hubert-large-ls960-ft (with --ditto-lmdm)")
    parser.add_argument("--ditto-heads", type=int, default=8, help="LMDM attention heads (8 in the release)")
    parser.add_argument("--ditto-cfg", action="append", default=[],
                        help="Ditto's cfg .pkl (offline, online, or both given twice): sampling steps, overlap, clip range")
    args = parser.parse_args()
    if args.ditto_cfg and not args.ditto_lmdm:
        fail("--ditto-cfg goes with --ditto-lmdm")
    for path in args.ditto_cfg:
        if not os.path.isfile(path):
            fail(f"{path}: no such file")
    if bool(args.ditto_lmdm) != bool(args.ditto_hubert):
        fail("--ditto-lmdm and --ditto-hubert go together")
    if args.ditto_lmdm and not os.path.isfile(args.ditto_lmdm):
        fail(f"{args.ditto_lmdm}: no such file")
    if args.ditto_hubert and not os.path.isdir(args.ditto_hubert):
        fail(f"{args.ditto_hubert}: no such folder")
    if args.ditto_heads <= 0:
        fail(f"--ditto-heads {args.ditto_heads}: not a positive count")
    if bool(args.motion_generator) != bool(args.motion_template):
        fail("--motion-generator and --motion-template go together")
    for path in (args.motion_generator, args.motion_template, args.hubert_config):
        if path and not os.path.isfile(path):
            fail(f"{path}: no such file")

    if os.path.exists(args.out) and os.listdir(args.out) and not args.force:
        fail(f"{args.out} exists; pass --force to replace it")
    config = read_config(args.config)
    staging = tempfile.mkdtemp(prefix=".bundle-", dir=os.path.dirname(os.path.abspath(args.out)))
    try:
        sources, components, generator_components = {}, {}, {}
        for i, component in enumerate(COMPONENTS):
            path = find_checkpoint(args.checkpoints, component)
            print(f"[{i + 1}/{len(COMPONENTS)}] {component}: reading {path}", flush=True)
            state = load_state(path, component)
            write_safetensors(state, os.path.join(staging, component + ".safetensors"))
            sources[os.path.basename(path)] = {"sha256": sha256(path), "bytes": os.path.getsize(path)}
            components[component] = component + ".safetensors"
        licence = LICENCE
        joyvasa = None
        if args.motion_generator:
            print(f"[+] motion_generator: reading {args.motion_generator}", flush=True)
            hubert = read_hubert_config(args.hubert_config)
            state, joyvasa = read_motion_generator(args.motion_generator, hubert, args.positional_encoding)
            write_safetensors(state, os.path.join(staging, "motion_generator.safetensors"))
            generator_components["motion_generator"] = "motion_generator.safetensors"
            print(f"[+] motion_template: reading {args.motion_template}", flush=True)
            template = read_template(args.motion_template)
            write_safetensors(template, os.path.join(staging, "motion_template.safetensors"))
            generator_components["motion_template"] = "motion_template.safetensors"
            for path in (args.motion_generator, args.motion_template, args.hubert_config):
                if path:
                    sources[os.path.basename(path)] = {"sha256": sha256(path), "bytes": os.path.getsize(path)}
            licence = LICENCE + "; " + JOYVASA_LICENCE
        generators = {}
        if joyvasa is not None:
            generators["joyvasa"] = {"config": joyvasa, "components": generator_components}
        if args.ditto_lmdm:
            print(f"[+] ditto lmdm: reading {args.ditto_lmdm}", flush=True)
            lmdm = read_lmdm(args.ditto_lmdm)
            write_safetensors(lmdm, os.path.join(staging, "ditto_lmdm.safetensors"))
            # Values per motion frame: the denoiser's output rows.
            motion_width = lmdm["final_layer.weight"].shape[0]
            print(f"[+] ditto hubert: reading {args.ditto_hubert}", flush=True)
            state, hubert, weights = read_ditto_hubert(args.ditto_hubert)
            write_safetensors(state, os.path.join(staging, "ditto_hubert.safetensors"))
            for path in (args.ditto_lmdm, weights, os.path.join(args.ditto_hubert, "config.json")):
                sources[os.path.basename(path)] = {"sha256": sha256(path), "bytes": os.path.getsize(path)}
            ditto_config = {"heads": args.ditto_heads, "sampling_steps": 50, "overlap": 10, "hubert": hubert}
            for path in args.ditto_cfg:
                print(f"[+] ditto cfg: reading {path}", flush=True)
                ditto_config.update(read_ditto_cfg(path, motion_width))
                sources[os.path.basename(path)] = {"sha256": sha256(path), "bytes": os.path.getsize(path)}
            generators["ditto"] = {
                "config": ditto_config,
                "components": {"lmdm": "ditto_lmdm.safetensors", "hubert": "ditto_hubert.safetensors"},
            }
            licence = licence + "; " + DITTO_LICENCE
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "renderers": {"liveportrait": {"config": config, "components": components}},
            "motion_generators": generators,
            "sources": sources,
            "licence": licence,
            "converted_by": "tools/liveportrait/convert.py",
        }
        with open(os.path.join(staging, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
        if os.path.exists(args.out):
            shutil.rmtree(args.out)
        os.rename(staging, args.out)
    except BaseException:
        # A failed conversion leaves nothing behind.
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
