#!/usr/bin/env python3
"""Makes the face-analysis test images in tests/files/faces/ (PNG, so every decoder sees
the same pixels): the demo portrait mirrored, turned by 8 and 20 degrees, in grey, at
256 px and small inside a 1080p frame, plus public-domain portraits of other people.

    python3 tools/mediapipe/make_test_images.py --hopper PATH/grace_hopper.jpg \
        --obama PATH/obama.jpg --biden PATH/biden.jpg

Sources (see tests/files/faces/README.md): matplotlib's sample data (grace_hopper.jpg)
and the face_recognition 1.3.0 sdist on PyPI (tests/test_images/obama.jpg, biden.jpg).
Needs Pillow.
"""

import argparse
import os

from PIL import Image, ImageOps

OUT = "tests/files/faces"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--astronaut", default="assets/astronaut.png")
    parser.add_argument("--hopper", required=True)
    parser.add_argument("--obama", required=True)
    parser.add_argument("--biden", required=True)
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    astronaut = Image.open(args.astronaut).convert("RGB")
    save = lambda image, name: image.save(os.path.join(OUT, name), optimize=True)
    save(ImageOps.mirror(astronaut), "astronaut_mirror.png")
    for degrees in (8, 20):
        # Counter-clockwise on screen, about the image centre, edges filled grey.
        turned = astronaut.rotate(degrees, resample=Image.BICUBIC, fillcolor=(128, 128, 128))
        save(turned, f"astronaut_rot{degrees}.png")
    save(astronaut.convert("L"), "astronaut_gray.png")
    save(astronaut.resize((256, 256), Image.LANCZOS), "astronaut_256.png")
    # A 1920x1080 frame, plain studio grey, the portrait at 0.9x off to the right.
    frame = Image.new("RGB", (1920, 1080), (96, 104, 112))
    small = astronaut.resize((460, 460), Image.LANCZOS)
    frame.paste(small, (1240, 380))
    save(frame, "astronaut_1080p.png")
    hopper = Image.open(args.hopper).convert("RGB")
    save(hopper, "hopper.png")
    obama = Image.open(args.obama).convert("RGB")
    save(obama.resize((640, round(obama.height * 640 / obama.width)), Image.LANCZOS), "obama.png")
    biden = Image.open(args.biden).convert("RGB")
    save(biden.resize((600, round(biden.height * 600 / biden.width)), Image.LANCZOS), "biden.png")


if __name__ == "__main__":
    main()
