#!/usr/bin/env python3
"""Records MediaPipe's own results on the face test images, for tests/face_mesh.rs:
mp.solutions.face_detection (short range, the detector FaceMesh uses) and
mp.solutions.face_mesh (static images, refined landmarks: 478 points), in pixels
(x * width, y * height, z * width). Needs mediapipe 0.10.14 (a development venv; the
tests only read what this writes).

    python3 tools/mediapipe/reference.py tests/files/faces/*.png assets/astronaut.png \
        --out tests/files/faces/mediapipe.json
"""

import argparse
import json
import os

import mediapipe as mp
import numpy as np
from PIL import Image


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("images", nargs="+")
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--crop",
        action="append",
        default=[],
        metavar="NAME=X,Y,W,H",
        help="where mediapipe finds no face (it looks at the whole frame only), record "
        "its results on this region of the image instead, in the whole image's pixels",
    )
    args = parser.parse_args()
    results = {"mediapipe": mp.__version__, "images": {}}
    detection = mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.5)
    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True, max_num_faces=1)
    crops = {}
    for spec in args.crop:
        name, box = spec.split("=")
        crops[name] = [int(v) for v in box.split(",")]
    for path in args.images:
        full = np.asarray(Image.open(path).convert("RGB"))
        name = os.path.basename(path)
        x0, y0 = 0, 0
        rgb = full
        if name in crops:
            x0, y0, cw, ch = crops[name]
            rgb = np.ascontiguousarray(full[y0 : y0 + ch, x0 : x0 + cw])
        h, w = rgb.shape[:2]
        entry = {"width": full.shape[1], "height": full.shape[0], "detections": [], "mesh": None}
        if name in crops:
            entry["region"] = crops[name]
        found = detection.process(rgb)
        for d in found.detections or []:
            box = d.location_data.relative_bounding_box
            entry["detections"].append({
                "score": d.score[0],
                "box": [box.xmin * w + x0, box.ymin * h + y0, box.width * w, box.height * h],
                "keypoints": [[k.x * w + x0, k.y * h + y0] for k in d.location_data.relative_keypoints],
            })
        meshed = mesh.process(rgb)
        if meshed.multi_face_landmarks:
            landmarks = meshed.multi_face_landmarks[0].landmark
            entry["mesh"] = [[p.x * w + x0, p.y * h + y0, p.z * w] for p in landmarks]
        results["images"][name] = entry
        print(f"{path}: {len(entry['detections'])} detections, mesh {'yes' if entry['mesh'] else 'no'}")
    with open(args.out, "w") as f:
        json.dump(results, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
