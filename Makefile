# Two entry points (see README): `make demo` and `make test`. Both create .venv and install.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
ART    ?= artifacts

.PHONY: demo test install lint bench bench-quick soak clean ui-deps gpu-check gpu-check-dry gpu-wheels image-test

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# torch first (pinned CPU build), so nothing later can pull an unpinned CUDA torch
$(STAMP): $(PY) pyproject.toml requirements/cpu.txt requirements/oracle.txt
	$(PIP) install --quiet -r requirements/cpu.txt
	$(PIP) install --quiet --no-warn-conflicts -e ".[server,onnx,openvino,bench,dev,triton,ui]" -c requirements/cpu.txt
	$(PIP) install --quiet --no-warn-conflicts -r requirements/oracle.txt -c requirements/cpu.txt
	@# the oracle last and --no-deps: its own lists name torchaudio, a CUDA torch and a training stack
	@# that the tests never import (they are stubbed), so pip must neither install nor report them
	$(PIP) install --quiet --no-deps f5-tts==1.1.22 vocos==0.1.0
	$(PY) -c "import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith('2.13.0') else 'unexpected torch ' + v)"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	@test -f $(ART)/tiny/model.safetensors || $(PY) -m indicf5_fast.cli init-random $(ART)/tiny --arch tiny
	$(PY) -m indicf5_fast.cli synth --model $(ART)/tiny --ref-audio $(ART)/tiny/prompts/demo.wav \
	    --ref-text "$$(cat $(ART)/tiny/prompts/demo.txt)" \
	    --text "नमस्ते, आप कैसे हैं? यह indicf5-fast का एक छोटा सा डेमो है।" --seed 0 --out $(ART)/demo.wav
	$(PY) -m indicf5_fast.cli bench --demo --output-dir $(ART)/bench-demo

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests

bench: $(STAMP)
	$(PY) -m indicf5_fast.cli bench --output-dir $(ART)/bench

bench-quick: $(STAMP)
	$(PY) -m indicf5_fast.cli bench --quick --output-dir $(ART)/bench-quick

soak: $(STAMP)
	@test -f $(ART)/tiny/model.safetensors || $(PY) -m indicf5_fast.cli init-random $(ART)/tiny --arch tiny
	$(PY) -m indicf5_fast.cli stress --soak --requests 1000 --concurrency 4 --spawn-server --model $(ART)/tiny \
	    --server-args "--preset fast --data-dir $(ART)/soak/voices" --output-dir $(ART)/soak

# ---- GPU proof kit (issue 14): one call on a CUDA machine, results in $(OUT) (see scripts/gpu-check.sh)
# The GPU machine runs its own python3 (torch with CUDA); missing packages travel as cp312 wheels in
# .whl/ (make gpu-wheels, ~8 MB; numpy, torch, onnx, onnxruntime, einops, torchdiffeq, safetensors,
# scipy, pytest are in that image already). `make test` runs the CPU dry run (tests/test_gpu_kit.py).
OUT ?= $(ART)/gpu-check
GPU_PYTHON ?= python3
GPU_WHEELS := f5-tts==1.1.22 vocos==0.1.0 x-transformers==2.31.10 einx==0.4.3 frozendict==2.5.1 \
    loguru==0.7.3 torch-einops-utils==0.2.0 pypinyin==0.55.0 rjieba==0.2.2 soundfile==0.14.0 \
    cffi==2.1.1 pycparser==3.12
WHEEL_PLATFORMS := --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64

gpu-check:
	OUT=$(OUT) PYTHON=$(GPU_PYTHON) bash scripts/gpu-check.sh

gpu-check-dry: $(STAMP)
	OUT=$(OUT)-dry PYTHON=$(PY) GPU_CHECK_DEVICE=cpu bash scripts/gpu-check.sh

gpu-wheels: $(PY)
	rm -rf .whl && mkdir -p .whl
	$(PIP) download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	    $(WHEEL_PLATFORMS) -d .whl $(GPU_WHEELS)
	@du -sh .whl

# System packages for the web playground and its browser test (Debian/Ubuntu, as root): Chromium and
# its driver (Selenium must not download one), ffmpeg (Gradio streams audio through it), Noto fonts
# (Indic glyphs). Does nothing when they are already there or there is no apt-get.
UI_DEBS := chromium chromium-driver ffmpeg fonts-noto-core
ui-deps:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && command -v ffmpeg >/dev/null \
	    && dpkg-query -W -f='$${Status}' fonts-noto-core 2>/dev/null | grep -q 'ok installed'; then echo "ui-deps: already installed"; \
	elif ! command -v apt-get >/dev/null; then echo "ui-deps: no apt-get; install $(UI_DEBS) yourself"; \
	else SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(UI_DEBS); fi

# Build docker/Dockerfile (the CPU server image) with buildah on a local Debian base and test it:
# checkpoint, synth, serve + one /v1/audio/speech from here, non-root, health probe; with the venv
# present, also --backend remote in front of PyTriton. As root with buildah and debootstrap.
image-test:
	$(PYTHON) scripts/image_test.py $(if $(wildcard $(PY)),--triton-python $(PY))

clean:
	rm -rf $(VENV) $(ART) .pytest_cache
