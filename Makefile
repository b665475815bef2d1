# The two commands a new user needs: `make demo` and `make test`.
# Both install what is missing first (scripts/setup.sh), so they work on a fresh
# Debian 12 machine; a second run skips everything already there.

SHELL := /bin/bash
.DEFAULT_GOAL := demo

# Builds and tests use their own plugin registry, never the user's cache.
export GST_REGISTRY := $(CURDIR)/target/gst-registry.bin
# The demo and tests run on every core the machine has.
CARGO_FEATURES = $$(test "$$(cat .venv/torch-set 2>/dev/null)" = cuda && echo --features cuda)

.PHONY: setup setup-tts build demo serve test lint bench clean train-builtin eval-builtin parity-liveportrait parity-joyvasa parity-ditto

# The builtin engine's mouth model: data, training, evaluation (see docs/builtin-eval).
BUILTIN_DATA := data/builtin
BUILTIN_SEED := 1

setup:
	@scripts/setup.sh

setup-tts:
	@scripts/setup.sh --with-tts

build: setup
	cargo build --release --locked $(CARGO_FEATURES)

demo: build
	@mkdir -p out
	./target/release/vasafacegen-render --force \
	    --image assets/astronaut.png --audio assets/speech.wav --out out/demo.mp4
	@echo "Play it with: gst-play-1.0 out/demo.mp4   (or any video player)"

# Talk to the avatar from a browser: open http://127.0.0.1:8080/ (see README).
serve: build
	./target/release/vasafacegen-serve --image assets/astronaut.png

# Every test: unit tests, Harness tests, pipelines, error cases. The release profile is
# shared with `make demo`, so a machine builds the dependencies once.
test: build
	cargo fmt --check
	cargo clippy --release --locked --all-targets $(CARGO_FEATURES) -- -D warnings
	cargo test --release --locked $(CARGO_FEATURES) -- --test-threads=2

lint: setup
	cargo clippy --release --locked --all-targets $(CARGO_FEATURES) -- -D warnings

bench: build
	cargo bench --locked $(CARGO_FEATURES)

# Synthesises the training speech (about 1 minute), checks its phone timing, trains
# (about 6 minutes on 2 cores) and writes models/builtin/{mouth.safetensors,manifest.json}.
train-builtin: setup-tts
	cargo build --release --locked $(CARGO_FEATURES) --bin vasafacegen-train-builtin
	rm -rf $(BUILTIN_DATA)
	python3 tools/builtin/make_data.py $(BUILTIN_DATA) --seed $(BUILTIN_SEED)
	python3 tools/builtin/check_alignment.py $(BUILTIN_DATA)
	./target/release/vasafacegen-train-builtin --data $(BUILTIN_DATA) --out models/builtin \
	    --seed $(BUILTIN_SEED) --epochs 12 --stride 1

# Measures the shipped model on held-out voices, silence, singing and music and writes
# docs/builtin-eval/ (report.md and plots). Fails if a threshold does not hold.
eval-builtin: setup-tts
	cargo build --release --locked $(CARGO_FEATURES) --bin vasafacegen-eval-builtin
	test -f $(BUILTIN_DATA)/manifest.json || \
	    python3 tools/builtin/make_data.py $(BUILTIN_DATA) --seed $(BUILTIN_SEED)
	./target/release/vasafacegen-eval-builtin --data $(BUILTIN_DATA) --out docs/builtin-eval

# Parity of the LivePortrait networks with the reference, on the fixture set at
# $(VASAFACEGEN_FIXTURES) (default ../shared/fixtures); `make test` runs it too.
parity-liveportrait: setup
	cargo test --release --locked $(CARGO_FEATURES) --test liveportrait_parity

# The same for JoyVASA's motion generator (so far its HuBERT audio encoder).
parity-joyvasa: setup
	cargo test --release --locked $(CARGO_FEATURES) --test joyvasa_parity

parity-ditto: setup
	cargo test --release --locked $(CARGO_FEATURES) --test ditto_parity

clean:
	cargo clean
	rm -rf out $(BUILTIN_DATA)
