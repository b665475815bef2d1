#!/usr/bin/env python3
"""Draws the project's face mesh on every face test image into one contact sheet
(docs/face-mesh.png): each image goes through `examples/face_landmarks --draw`, then the
drawings are cut around the face and tiled. Needs Pillow and a release build of the
example (cargo build --release --example face_landmarks).

    python3 tools/mediapipe/contact_sheet.py --out docs/face-mesh.png
"""

import argparse
import glob
import json
import os
import subprocess
import tempfile

from PIL import Image, ImageDraw

TILE = 240


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="docs/face-mesh.png")
    parser.add_argument("--example", default="target/release/examples/face_landmarks")
    args = parser.parse_args()
    images = ["assets/astronaut.png"] + sorted(
        p for p in glob.glob("tests/files/faces/*.png") if not p.endswith("cat.png")
    )
    tiles = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in images:
            drawn = os.path.join(tmp, os.path.basename(path))
            result = subprocess.run(
                [args.example, path, "--draw", drawn], check=True, capture_output=True, text=True
            )
            found = json.loads(result.stdout)
            xs = [p[0] for p in found["points"]]
            ys = [p[1] for p in found["points"]]
            cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
            half = 0.75 * max(max(xs) - min(xs), max(ys) - min(ys))
            crop = Image.open(drawn).crop((int(cx - half), int(cy - half), int(cx + half), int(cy + half)))
            tile = crop.resize((TILE, TILE), Image.LANCZOS)
            label = os.path.basename(path)
            ImageDraw.Draw(tile).text((6, TILE - 16), label, fill=(255, 255, 0))
            tiles.append(tile)
    columns = 5
    rows = (len(tiles) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * TILE, rows * TILE), (32, 32, 32))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * TILE, (i // columns) * TILE))
    # A 256-colour palette keeps the file small; the points stay exact colours.
    sheet.quantize(256).save(args.out, optimize=True)
    print(f"wrote {args.out} ({len(tiles)} images)")


if __name__ == "__main__":
    main()
