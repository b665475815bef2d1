#!/usr/bin/env bash
# Regenerates assets/speech.wav from assets/speech.txt with festival's CMU SLT HTS voice
# (Debian packages festival and festvox-us-slt-hts; scripts/setup.sh --with-tts).
set -euo pipefail
cd "$(dirname "$0")/.."
text2wave -eval '(voice_cmu_us_slt_arctic_hts)' -F 16000 -o /tmp/vasafacegen-speech.wav assets/speech.txt
# Peak-normalise to -1 dBFS so the demo is as loud as typical speech recordings.
sox /tmp/vasafacegen-speech.wav -b 16 -c 1 -r 16000 assets/speech.wav gain -n -1
rm -f /tmp/vasafacegen-speech.wav
