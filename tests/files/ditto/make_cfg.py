#!/usr/bin/env python3
"""Writes test cfg pickles laid out as Ditto's (ditto-talkinghead cfg .pkl: base_cfg,
audio2motion_cfg, default_kwargs), with numpy arrays pickled as numpy pickles them, using
the standard library alone (stand-in numpy classes under numpy's names).

    make_cfg.py OUT_DIR MOTION_WIDTH

Writes offline.pkl, online.pkl, clip_zero.pkl (a clip range
of zeros) and hostile.pkl (a pickle that would call os.system).
"""

import os
import pickle
import struct
import sys
import types

numpy = types.ModuleType("numpy")
core = types.ModuleType("numpy.core")
multiarray = types.ModuleType("numpy.core.multiarray")
sys.modules.update({"numpy": numpy, "numpy.core": core, "numpy.core.multiarray": multiarray})


class dtype:
    def __init__(self, name, align=False, copy=True):
        self.name = name

    def __reduce__(self):
        return (dtype, (self.name, False, True), (3, "<", None, None, None, -1, -1, 0))


class ndarray:
    def __init__(self, shape, values):
        self.shape, self.values = shape, values

    def __reduce__(self):
        data = struct.pack(f"<{len(self.values)}f", *self.values)
        return (_reconstruct, (ndarray, (0,), b"b"), (1, self.shape, dtype("f4"), False, data))


def _reconstruct(cls, shape, tag):
    raise AssertionError("only for pickling")


def scalar(kind, data):
    raise AssertionError("only for pickling")


class f32:
    """A numpy float32 scalar."""

    def __init__(self, value):
        self.value = value

    def __reduce__(self):
        return (scalar, (dtype("f4"), struct.pack("<f", self.value)))


for name, thing in (("dtype", dtype), ("ndarray", ndarray)):
    thing.__module__, thing.__qualname__ = "numpy", name
    setattr(numpy, name, thing)
for name, thing in (("_reconstruct", _reconstruct), ("scalar", scalar)):
    thing.__module__, thing.__qualname__ = "numpy.core.multiarray", name
    setattr(multiarray, name, thing)


def cfg(width, default_kwargs):
    return {
        "base_cfg": {
            "appearance_extractor_cfg": {"model_path": "ditto_pytorch/models/appearance_extractor.pth", "device": "cuda"},
            "hubert_cfg": {"model_path": "", "device": "cuda"},
        },
        "audio2motion_cfg": {
            "model_path": "ditto_pytorch/models/lmdm_v0.4_hubert.pth", "device": "cuda",
            "motion_feat_dim": width, "audio_feat_dim": 1103, "seq_frames": 80,
            "w2f_type": "hubert", "use_emo": True, "use_sc": True, "use_eye_open": True, "use_eye_ball": True,
        },
        "default_kwargs": default_kwargs,
    }


def main():
    out, width = sys.argv[1], int(sys.argv[2])
    lows = [-3.0 - (i % 7) * 0.1 for i in range(width)]
    highs = [3.0 + (i % 5) * 0.1 for i in range(width)]
    clip = ndarray((4, width), lows + highs + [0.0] * (2 * width))
    files = {
        "offline.pkl": cfg(width, {
            "sampling_timesteps": 12, "overlap_v2": 12, "v_min_max_for_clip": clip, "smo_k_d": 3,
            "delta_eye_arr": ndarray((15, 63), [0.01] * 15 * 63), "delta_eye_open_n": 0,
            "emo": 4, "crop_scale": f32(2.3), "online_mode": False,
        }),
        "online.pkl": cfg(width, {"sampling_timesteps": 7, "overlap_v2": 60, "online_mode": True}),
        "clip_zero.pkl": cfg(width, {"v_min_max_for_clip": ndarray((4, width), [0.0] * 4 * width)}),
    }
    for name, data in files.items():
        with open(os.path.join(out, name), "wb") as f:
            pickle.dump(data, f, protocol=4)

    class Hostile:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    with open(os.path.join(out, "hostile.pkl"), "wb") as f:
        pickle.dump({"default_kwargs": Hostile()}, f, protocol=4)


if __name__ == "__main__":
    main()
