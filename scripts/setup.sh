#!/usr/bin/env bash
# Installs what building, testing and running the plugin needs, and nothing that is
# already there: Debian packages (apt-get, through sudo when not root) and a Python venv
# inside the repository that carries libtorch 2.11.0 (the `torch` wheel from PyPI).
#
# Usage: scripts/setup.sh [--with-tts]
#   --with-tts   also install the text-to-speech voices used to train/evaluate the builtin
#                mouth model (espeak-ng, festival and its voices, sox) and the font the
#                evaluation report's plots use.
#
# Writes .venv/torch-set ("cpu" or "cuda"): the Makefile turns "cuda" into the `cuda`
# cargo feature. A second run prints one line per step and downloads nothing.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
venv="$repo/.venv"
torch_version=2.11.0

say() { printf '[setup] %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# --- Debian packages ----------------------------------------------------------------
packages=(
    pkg-config build-essential
    libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
    gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-base-apps
    gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-libav
    # The live agent example (examples/python/tts_avatar.py, run by `make test`):
    # PyGObject for the system python, and a voice.
    python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 espeak-ng
    # vasafacegen-serve (WebRTC to a browser) and its test in a headless Chromium.
    gstreamer1.0-plugins-bad libgstreamer-plugins-bad1.0-dev gstreamer1.0-nice chromium
)
if [ "${1:-}" = "--with-tts" ]; then
    packages+=(libespeak-ng1 festival festvox-kallpc16k festvox-kdlpc16k
               festvox-us-slt-hts festvox-ca-ona-hts festival-ca festvox-italp16k
               festvox-itapc16k sox fonts-dejavu-core)
fi

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    say "Debian packages installed"
else
    say "Debian packages: all present"
fi

# --- libtorch through the torch wheel -----------------------------------------------
# With an NVIDIA GPU the full CUDA wheel set (2.7 GB); otherwise only the wheels that
# libtorch_cpu.so needs at load time (545 MB): torch itself plus libcudart and libcupti.
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    want_set=cuda
else
    want_set=cpu
fi
have_set=$(cat "$venv/torch-set" 2>/dev/null || true)

if [ "$have_set" = "$want_set" ] && [ -e "$venv/libtorch/lib/libtorch_cpu.so" ]; then
    say "libtorch $torch_version ($have_set set): present in .venv"
else
    if [ ! -x "$venv/bin/python" ]; then
        say "creating venv $venv"
        python3 -m venv "$venv" 2>/dev/null || {
            say "python3 -m venv failed; installing python3-venv"
            as_root apt-get install -y -qq python3-venv >/dev/null
            python3 -m venv "$venv"
        }
    fi
    if [ "$want_set" = cuda ]; then
        say "installing torch==$torch_version with its CUDA wheels (about 2.7 GB download)"
        "$venv/bin/pip" install --quiet --progress-bar on "torch==$torch_version"
    else
        say "installing torch==$torch_version, CPU-only wheel set (about 545 MB download)"
        "$venv/bin/pip" install --quiet --progress-bar on --no-deps "torch==$torch_version" \
            nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
    fi
    torch_dir=$(ls -d "$venv"/lib/python3*/site-packages/torch | head -n 1)
    # One stable path for .cargo/config.toml, whatever the Python minor version.
    ln -sfn "${torch_dir#"$venv"/}" "$venv/libtorch"
    echo "$want_set" > "$venv/torch-set"
    say "libtorch ready at .venv/libtorch ($want_set set)"
fi
