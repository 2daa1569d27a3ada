#!/usr/bin/env bash
# `make gpu-check`: labkit's GPU truth on one bare CUDA machine (an H100/H200 with Python 3.12, torch + CUDA,
# transformers, accelerate, peft, safetensors, pandas, matplotlib, pytest; diffusers and MLflow absent and no
# internet) in at most 8 minutes, every result in one folder:
#
#   1. install the wheels carried in .whl/ (`make gpu-wheels` downloads them) into $GPU_CHECK_SITE (/tmp/site);
#   2. check the stack imports and CUDA is there;
#   3. `labkit bench gpu --families sd15,sdxl`: bench_gpu.csv and bench_gpu.md (written row by row, so a timeout
#      keeps what was measured), suggested_vram.txt (the strategies.toml lines), mlruns.tar.gz (the MLflow run);
#   4. `pytest -m gpu tests/gpu`: junit.xml.
#
# Every step has its own time limit and runs whatever the steps before it did, so the table survives a failing
# pytest and the other way round; gpu_check.log holds every step's output, summary.txt one line per step. The
# folder holds at most 7 files (the device tool brings back 8). Exit status: 0 when every step passed.
#
#   scripts/gpu_check.sh [RESULTS]          RESULTS: default $OUT if set, else outputs/gpu-check
#   GPU_CHECK_DRY=1 scripts/gpu_check.sh    no GPU needed: the same steps with the GPU parts swapped for their CPU
#                                           path (tests collected, not run; the bench on the tiny models)
# On a lent GPU machine whose tool copies this checkout over (the wheels are git-ignored, so name them to travel):
#   command "make gpu-check", carry [".whl"], a limit of 540 s; the results come back from $OUT (7 files).
# Settings (environment): GPU_CHECK_FAMILIES (sd15,sdxl), GPU_CHECK_STEPS (25), GPU_CHECK_WORKERS (4 pytest
# processes), GPU_CHECK_WHEELS (.whl), GPU_CHECK_SITE (/tmp/site), PYTHON (python3), and the limits in seconds
# T_INSTALL (30), T_PROBE (30), T_BENCH (270), T_PYTEST (140): 470 s in all, inside the 8 minutes. The bench starts
# no row in its last 30 s (`--time-limit`), so that it writes its MLflow run; the rows left are listed as not run.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
RESULTS=${1:-${OUT:-$REPO/outputs/gpu-check}}
DRY=${GPU_CHECK_DRY:-0}
FAMILIES=${GPU_CHECK_FAMILIES:-sd15,sdxl}
STEPS=${GPU_CHECK_STEPS:-25}
WORKERS=${GPU_CHECK_WORKERS:-4}
WHEELS=${GPU_CHECK_WHEELS:-.whl}
SITE=${GPU_CHECK_SITE:-/tmp/site}
if [ "$DRY" = 1 ] && [ -z "${PYTHON:-}" ] && [ -x "$REPO/.venv/bin/python" ]; then
    PYTHON=$REPO/.venv/bin/python   # a dry run on a development machine: the project's environment
fi
PYTHON=${PYTHON:-python3}
T_INSTALL=${T_INSTALL:-30} T_PROBE=${T_PROBE:-30} T_BENCH=${T_BENCH:-270} T_PYTEST=${T_PYTEST:-140}
PROJECT=$(mktemp -d /tmp/labkit-gpu-check.XXXXXX)   # the bench's project and MLflow store
mkdir -p "$RESULTS" "$PROJECT/mlruns"
RESULTS=$(cd "$RESULTS" && pwd)
LOG=$RESULTS/gpu_check.log
SUMMARY=$RESULTS/summary.txt
: >"$LOG"
: >"$SUMMARY"
export PYTHONUNBUFFERED=1 LABKIT_ROOT=$PROJECT
unset MLFLOW_TRACKING_URI
failed=0
began=$(date +%s)

say() { echo "$*" | tee -a "$SUMMARY"; }

# step NAME LIMIT CMD...: run CMD under `timeout` (signal $STOP_SIGNAL, default TERM; KILL 15 s later), its
# output into the log; one summary line
step() {
    local name=$1 limit=$2 t rc
    shift 2
    echo "== $name (limit ${limit}s): $*" >>"$LOG"
    t=$(date +%s)
    timeout -s "${STOP_SIGNAL:-TERM}" -k 15 "$limit" "$@" >>"$LOG" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then
        say "$name: ok in $(($(date +%s) - t)) s"
    else
        [ $rc -eq 124 ] || [ $rc -eq 137 ] && rc="$rc (timed out after ${limit} s)"
        say "$name: FAILED, exit $rc after $(($(date +%s) - t)) s (see gpu_check.log)"
        failed=1
    fi
    [ "${rc%% *}" = 0 ]
}

say "labkit gpu-check $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?') on ${HOSTNAME:-$(uname -n)}, $(date -u +%FT%TZ)$([ "$DRY" = 1 ] && echo ', DRY RUN (no GPU parts)')"

# 1. the carried wheels (none: the machine is expected to have the stack already)
pyver=$($PYTHON -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
if [ "$DRY" = 1 ] && [ "$pyver" != 3.12 ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    say "install: skipped in a dry run: the wheels in $WHEELS are for Python 3.12, $PYTHON is ${pyver:-missing}"
    export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
elif ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    step install "$T_INSTALL" $PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target "$SITE" "$WHEELS"/*.whl
    export PYTHONPATH=$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}
else
    say "install: no wheels in $WHEELS (run 'make gpu-wheels' where pip can download); using what is installed"
    export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
fi

# 2. the stack and the device
step probe "$T_PROBE" $PYTHON - "$DRY" <<'EOF'
import sys
import torch, diffusers, mlflow, transformers, labkit
print("python", sys.version.split()[0], "torch", torch.__version__, "diffusers", diffusers.__version__,
      "mlflow", mlflow.__version__, "transformers", transformers.__version__, "labkit", labkit.__file__)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("cuda", torch.version.cuda, p.name, f"{p.total_memory / 2**30:.1f} GiB", f"sm_{p.major}{p.minor}")
elif sys.argv[1] != "1":
    sys.exit("no CUDA device visible to torch")
EOF
probe_ok=$?
grep -E '^(python|cuda) ' "$LOG" | tee -a "$SUMMARY" >/dev/null

# 3. the bench (the table is written row by row: a timeout keeps what was measured)
if [ $probe_ok -eq 0 ]; then
    if [ "$DRY" = 1 ]; then
        bench_args=(--tiny --families "${FAMILIES%%,*}")
    else
        bench_args=(--families "$FAMILIES" --steps "$STEPS")
    fi
    step bench "$T_BENCH" $PYTHON -m labkit bench gpu "${bench_args[@]}" --out "$RESULTS" --root "$PROJECT" \
        --time-limit $((T_BENCH > 60 ? T_BENCH - 30 : T_BENCH))
    if [ -s "$RESULTS/bench_gpu.csv" ]; then
        $PYTHON -m labkit bench gpu --suggest-table "$RESULTS/bench_gpu.csv" >"$RESULTS/suggested_vram.txt" 2>>"$LOG"
        [ -s "$RESULTS/bench_gpu.md" ] && cat "$RESULTS/bench_gpu.md"
    fi
    tar -czf "$RESULTS/mlruns.tar.gz" -C "$PROJECT" mlruns 2>>"$LOG"

    # 4. the GPU tests
    # -v: a PASSED/FAILED line per test in the log, whatever happens after
    pytest_args=(-m gpu tests/gpu -p no:cacheprovider -v --junitxml="$RESULTS/junit.xml")
    if [ "$DRY" = 1 ]; then
        pytest_args+=(--collect-only -q)
    elif [ "$WORKERS" -gt 1 ] && $PYTHON -c "import xdist" 2>/dev/null; then
        # test by test, not file by file: test_gpu_fast.py's cold compiles would queue up in one process
        pytest_args+=(-n "$WORKERS" --dist load)
    fi
    if [ "$DRY" != 1 ] && $PYTHON -c "import pytest_timeout" 2>/dev/null; then
        pytest_args+=(--timeout=120)   # a test that hangs is named and failed, and the others go on
    fi
    # SIGINT at the limit: pytest stops as after Ctrl-C, and still writes junit.xml and its summary line
    STOP_SIGNAL=INT step pytest "$T_PYTEST" $PYTHON -m pytest "${pytest_args[@]}"
    grep -E '^(FAILED|ERROR)|[0-9]+ (passed|failed|skipped|error)|tests? collected' "$LOG" | tail -40 >>"$SUMMARY"
else
    say "bench, pytest: not run (the probe failed)"
fi

rm -rf "$PROJECT"
say "total: $(($(date +%s) - began)) s; results in $RESULTS: $(cd "$RESULTS" && ls | tr '\n' ' ')"
exit $failed
