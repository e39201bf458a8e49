#!/usr/bin/env bash
# One-call GPU proof (issue 14): the GPU defect tests, then `indicf5-fast bench` on CUDA against
# upstream f5-tts eager at its own GPU dtype (same process), with TTFA. <= 5 minutes on one H200.
#
#   make gpu-check                        # = scripts/gpu-check.sh
#   GPU_CHECK_DEVICE=cpu scripts/gpu-check.sh   # dry run: tiny model on the CPU (CI runs this)
#
# Results go to $OUT (default artifacts/gpu-check) as each part finishes, at most 8 files:
#   env.txt      machine, driver, torch/CUDA, package versions
#   tests.log    pytest -m gpu (tests/test_gpu.py + the ONNX GPU tests), JUnit in junit.xml
#   junit.xml    per-test results + measured figures (record_property)
#   bench.log    the bench console output
#   bench.json / bench.md / bench.png   the bench (rows, TTFA, speedups vs upstream)
#   summary.md   pass/fail counts, headline figures against the issue's targets
# Environment: PYTHON (default python3), GPU_CHECK_DEVICE (cuda | cpu), GPU_CHECK_PARTS
# (tests,bench), GPU_CHECK_DTYPES (our dtypes on CUDA, default float16 = upstream's GPU dtype;
# add bfloat16 for more rows, at one more compile), GPU_CHECK_TEST_TIMEOUT / GPU_CHECK_BENCH_TIMEOUT
# (seconds), GPU_CHECK_WORK (scratch dir). Cp312 wheels in .whl/ (make gpu-wheels) are installed
# into the scratch dir first when present, GPU mode only (the GPU machine has no package index).
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
PARTS="${GPU_CHECK_PARTS:-tests,bench}"
OUT="${OUT:-$ROOT/artifacts/gpu-check}"
WORK="${GPU_CHECK_WORK:-${TMPDIR:-/tmp}/indicf5-gpu-check}"
mkdir -p "$OUT" "$WORK"
START=$(date +%s)
say() { echo "[gpu-check +$(($(date +%s) - START))s] $*"; }

# ---------------------------------------------------------------- wheels (GPU machine: no index)
# (the CPU dry run uses the developer's environment: the cp312 wheels are for the GPU image)
if [ "$DEVICE" != "cpu" ] && compgen -G ".whl/*.whl" >/dev/null; then
    say "installing $(ls .whl/*.whl | wc -l) carried wheel(s) into $WORK/site"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$WORK/site" .whl/*.whl || { say "wheel install failed"; exit 3; }
    export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1

if [ "$DEVICE" = "cpu" ]; then
    MODE="dry run (CPU, tiny model: proves the kit, not the GPU)"
    TEST_TIMEOUT="${GPU_CHECK_TEST_TIMEOUT:-120}"
    BENCH_TIMEOUT="${GPU_CHECK_BENCH_TIMEOUT:-240}"  # a shared CI CPU can be slow
    BENCH_ARGS=(--device cpu --arch tiny --dtypes float32 --compile off --steps 32:uniform
                --seconds 0.5 --repeats 1 --ttfa-text "नमस्ते दुनिया।")
else
    MODE="GPU ($DEVICE)"
    TEST_TIMEOUT="${GPU_CHECK_TEST_TIMEOUT:-110}"
    BENCH_TIMEOUT="${GPU_CHECK_BENCH_TIMEOUT:-160}"
    BENCH_ARGS=(--device "$DEVICE" --arch base --dtypes "${GPU_CHECK_DTYPES:-float16}" --compile off,on
                --steps 32:uniform,16:uniform,7:epss --seconds 2,10 --repeats 2)
fi

# ---------------------------------------------------------------- 1. environment
{
    echo "mode: $MODE"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo unknown) $(git status --porcelain 2>/dev/null | wc -l) changed file(s)"
    echo "uname: $(uname -a)"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap \
        --format=csv,noheader 2>&1
    "$PY" - <<'EOF'
import importlib, platform, sys
print("python:", sys.version.split()[0], platform.machine())
try:
    import torch
    print("torch:", torch.__version__, "cuda:", torch.version.cuda, "available:", torch.cuda.is_available())
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        print("gpu:", p.name, f"cc {p.major}.{p.minor}", f"{p.total_memory / 2**30:.0f} GiB", f"{p.multi_processor_count} SMs")
except Exception as e:
    print("torch: not importable:", e)
for name in ("numpy", "onnx", "onnxruntime", "onnxscript", "triton", "f5_tts", "vocos", "x_transformers",
             "torchdiffeq", "pypinyin", "rjieba", "soundfile", "safetensors", "pytest", "torchaudio"):
    try:
        m = importlib.import_module(name)
        extra = ""
        if name == "onnxruntime":
            extra = " providers=" + ",".join(m.get_available_providers())
        print(f"{name}: {getattr(m, '__version__', 'present')}{extra}")
    except Exception as e:
        print(f"{name}: MISSING ({type(e).__name__}: {e})")
EOF
} >"$OUT/env.txt" 2>&1
say "env.txt written ($MODE)"

STATUS=0
# ---------------------------------------------------------------- 2. GPU defect tests
if [[ ",$PARTS," == *",tests,"* ]]; then
    say "tests: pytest -m gpu (timeout ${TEST_TIMEOUT}s)"
    timeout -k 10 "$TEST_TIMEOUT" "$PY" -m pytest -q -p no:cacheprovider -m gpu -rA \
        -o junit_family=xunit1 --junitxml="$OUT/junit.xml" \
        tests/test_gpu.py tests/test_onnx_backend.py >"$OUT/tests.log" 2>&1
    rc=$?
    say "tests: exit $rc ($(tail -n 1 "$OUT/tests.log"))"
    [ $rc -eq 0 ] || STATUS=1
fi

# ---------------------------------------------------------------- 3. bench vs upstream + TTFA
if [[ ",$PARTS," == *",bench,"* ]]; then
    say "bench: ${BENCH_ARGS[*]} (timeout ${BENCH_TIMEOUT}s)"
    timeout -k 10 "$BENCH_TIMEOUT" "$PY" -m indicf5_fast.cli bench "${BENCH_ARGS[@]}" --ttfa \
        --cache-dir "$WORK" --output-dir "$OUT" --no-progress >"$OUT/bench.log" 2>&1
    rc=$?
    say "bench: exit $rc"
    [ $rc -eq 0 ] || STATUS=1
fi

# ---------------------------------------------------------------- 4. summary
"$PY" "$ROOT/scripts/gpu_check_summary.py" "$OUT" "$MODE" >"$OUT/summary.md" 2>&1 || STATUS=1
cat "$OUT/summary.md"
say "done in $(($(date +%s) - START))s, status $STATUS; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit $STATUS
