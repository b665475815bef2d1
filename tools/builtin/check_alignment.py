#!/usr/bin/env python3
"""Checks that phone labels line up with their audio: for each synthesizer and voice,
the offset (ms) that puts the centre of labelled /p b m/ on the quietest point (lips
closed) should be about 0. Prints the mean level (dB) at each offset.

Usage: check_alignment.py DATA_DIR
"""
import json
import math
import struct
import sys
import wave


def samples(path):
    with wave.open(path) as w:
        n = w.getnframes()
        return struct.unpack(f"<{n}h", w.readframes(n))


def main():
    data = sys.argv[1]
    manifest = json.load(open(f"{data}/manifest.json"))
    groups = {}
    for u in manifest["utterances"]:
        if u["kind"] != "speech":
            continue
        voice = u["voice"].split("+")[0] if u["synth"] == "espeak" else u["voice"]
        groups.setdefault((u["split"], u["synth"], voice), []).append(u)
    worst = 0
    for key, utterances in sorted(groups.items()):
        levels = []
        for offset in range(-60, 61, 10):
            total, count = 0.0, 0
            for u in utterances[:25]:
                audio = samples(f"{data}/{u['wav']}")
                for phone, start, end in u["phones"]:
                    if phone not in ("p", "b", "m"):
                        continue
                    i = int(((start + end) / 2 + offset / 1000) * 16000)
                    window = audio[max(0, i - 160):i + 160]
                    if len(window) < 100:
                        continue
                    rms = math.sqrt(sum(x * x for x in window) / len(window))
                    total += 20 * math.log10(rms + 1)
                    count += 1
            levels.append((offset, total / max(count, 1)))
        best = min(levels, key=lambda level: level[1])[0]
        worst = max(worst, abs(best))
        print(f"{key}: quietest at {best:+d} ms  " + " ".join(f"{o}:{v:.1f}" for o, v in levels))
    sys.exit(0 if worst <= 20 else 1)


if __name__ == "__main__":
    main()
