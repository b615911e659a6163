#!/usr/bin/env bash
# The GPU suite: everything worth measuring on a GPU machine lent for a short time, in one run
# with a total budget it enforces (default and maximum 480 s after the install).
#
#   bash benchmarks/gpu_suite.sh                    # on a GPU machine: install, measure, write
#                                                   # benchmarks/results/gpu/*.json
#   bash benchmarks/gpu_suite.sh --dry-run          # on a CPU (CI): tiny sizes, seconds
#
# Options: --budget SECONDS (<= 480), --out DIR, --python PATH (default python3),
# --skip-install, --wheelhouse DIR (install offline from wheels in DIR: pip --no-index
# --find-links DIR, for a machine that cannot reach a package index; benchmarks/gpu_wheelhouse.sh
# prepares DIR elsewhere for an image that has JAX with CUDA already).
#
# Steps, each under `timeout` for what is left of the budget (and its own cap), each writing
# one JSON file into OUT; a step that fails or runs out of time is recorded as such in
# OUT/suite.json and the suite goes on:
#   0. install  `pip install -e ".[cuda]"` (JAX's CUDA 12 wheels); when the machine's JAX already
#               sees a GPU, only the project and its missing dependencies (not timed by the budget)
#   1. dataset  in the background from the start, on the CPU cores (JAX kept off the GPU):
#               OGBench cube-double task 2, 300 episodes, by the oracles (gpu_run.py generate)
#   2. train_step      ms/update and achieved TFLOP/s against the matmul peak measured in the
#                      same process, paper configuration: QAM, QAM-FQL, QAM-EDIT, FQL, MoMa QL,
#                      OFQL, ReBRAC
#   3. action_latency  single-observation decisions per second: QAM and every one-step agent
#                      (FQL, QAM-FQL, MoMa QL, OFQL, ReBRAC, TD3+BC, BC, IQL, CQL, RLPD)
#   4. multi_seed      8 seeds in one program against 8 single-seed runs, and 1 seed
#   5. training run    QAM, paper configuration, 100k updates on cube-double task 2 or as many
#                      as the rest of the budget allows (run.py --time-limit), success at the
#                      end, device idle fraction (gpu_run.py train)
# Then `benchmarks/tables.py --gpu OUT` writes OUT/summary.md, which the Benchmarks page shows.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DRY=0
BUDGET=""
OUT=""
PY=python3
INSTALL=1
WHEELHOUSE=""
MAX_BUDGET=480

die() { echo "gpu_suite.sh: error: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --budget) BUDGET=${2:-}; shift ;;
        --out) OUT=${2:-}; shift ;;
        --python) PY=${2:-}; shift ;;
        --skip-install) INSTALL=0 ;;
        --wheelhouse) WHEELHOUSE=${2:-}; shift ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done

if [ "$DRY" = 1 ]; then
    BUDGET=${BUDGET:-300}
    OUT=${OUT:-$(mktemp -d)}
    INSTALL=0  # the dry run uses the environment it is started in (CI's)
else
    BUDGET=${BUDGET:-$MAX_BUDGET}
    OUT=${OUT:-$ROOT/benchmarks/results/gpu}
fi
case "$BUDGET" in ''|*[!0-9]*) die "--budget must be a whole number of seconds, got '$BUDGET'" ;; esac
[ "$BUDGET" -ge 1 ] && [ "$BUDGET" -le "$MAX_BUDGET" ] || die "--budget must lie in 1..$MAX_BUDGET, got $BUDGET"
[ -z "$WHEELHOUSE" ] || [ -d "$WHEELHOUSE" ] || die "--wheelhouse $WHEELHOUSE is not a directory"
command -v "$PY" >/dev/null || die "no python at '$PY' (--python)"
mkdir -p "$OUT" || die "cannot create --out $OUT"
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
export PYTHONUNBUFFERED=1
STEPS_JSON="$WORK/steps.jsonl"
: > "$STEPS_JSON"

record() {  # record NAME STATUS SECONDS [NOTE]
    printf '{"step": "%s", "status": "%s", "seconds": %s, "note": "%s"}\n' "$1" "$2" "$3" "${4:-}" >> "$STEPS_JSON"
    echo "[gpu_suite] $1: $2 (${3}s)${4:+ - $4}" >&2
}

# ---- 0. install (before the budget starts)
if [ "$INSTALL" = 1 ]; then
    start=$SECONDS
    PIP=("$PY" -m pip install -q)
    [ -n "$WHEELHOUSE" ] && PIP+=(--no-index --find-links "$WHEELHOUSE")
    if "$PY" -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu')" 2>/dev/null; then
        note="JAX already sees a GPU: project and dependencies only"
        "${PIP[@]}" -e "$ROOT"
    else
        note="pip install -e .[cuda]"
        "${PIP[@]}" -e "$ROOT[cuda]"
    fi
    if [ $? -ne 0 ]; then
        record install error $((SECONDS - start)) "$note failed"
    else
        record install ok $((SECONDS - start)) "$note"
    fi
fi
"$PY" -c "import interpolant_rl, ogbench, tyro" || die "interpolant_rl or its dependencies do not import with $PY"
BACKEND=$("$PY" -c "import jax; print(jax.default_backend())")
if [ "$DRY" = 0 ] && [ "$BACKEND" != gpu ]; then
    die "JAX's backend is '$BACKEND', not gpu: use --dry-run on a CPU machine"
fi

DEADLINE=$((SECONDS + BUDGET))
left() { echo $((DEADLINE - SECONDS)); }

run_step() {  # run_step NAME CAP OUTFILE COMMAND... (stdout to OUTFILE)
    local name=$1 cap=$2 outfile=$3; shift 3
    local limit
    limit=$(left)
    [ "$cap" -lt "$limit" ] && limit=$cap
    if [ "$limit" -le 1 ]; then
        record "$name" skipped 0 "budget spent"
        return
    fi
    local start=$SECONDS
    timeout --signal=TERM --kill-after=5 "$limit" "$@" > "$WORK/$name.out" 2> "$WORK/$name.err"
    local code=$?
    local took=$((SECONDS - start))
    tail -n 5 "$WORK/$name.err" >&2
    if [ "$code" -eq 124 ] || [ "$code" -eq 137 ]; then
        record "$name" timed_out "$took" "stopped at its limit of ${limit}s"
    elif [ "$code" -ne 0 ]; then
        record "$name" error "$took" "exit code $code"
    elif [ -n "$outfile" ]; then
        cp "$WORK/$name.out" "$OUT/$outfile" && record "$name" ok "$took"
    else
        record "$name" ok "$took"
    fi
}

if [ "$DRY" = 1 ]; then
    SIZE=tiny; EPISODES=2; WORKERS=1; QUICK=(--quick)
    AGENTS_STEP=(qam); AGENTS_LATENCY=(fql); SEEDS=(2)
    CAPS=(90 60 60); RESERVE=20  # generous: a loaded 2-core CI machine compiles slowly
else
    SIZE=paper; EPISODES=300; WORKERS=$(( $(nproc) > 3 ? $(nproc) - 2 : 1 )); QUICK=()
    AGENTS_STEP=(qam qam_fql qam_edit fql moma_ql ofql rebrac)
    # QAM and every agent that acts with one network evaluation
    AGENTS_LATENCY=(qam fql qam_fql moma_ql ofql rebrac td3bc bc iql cql rlpd); SEEDS=(1 8)
    CAPS=(150 60 45); RESERVE=60  # RESERVE: the training run's final evaluation and exit
fi
DATA="$WORK/data"
DRYFLAG=(); [ "$DRY" = 1 ] && DRYFLAG=(--dry-run)

# ---- 1. the dataset, on the CPU cores while the GPU benchmarks run
"$PY" "$ROOT/benchmarks/gpu_run.py" generate --data-dir "$DATA" --episodes "$EPISODES" \
    --workers "$WORKERS" --out "$OUT/dataset.json" "${DRYFLAG[@]}" \
    > "$WORK/dataset.out" 2> "$WORK/dataset.err" &
DATASET_PID=$!
DATASET_START=$SECONDS

# ---- 2-4. the device benchmarks
run_step train_step "${CAPS[0]}" train_step.json "$PY" "$ROOT/benchmarks/train_step.py" \
    --configs "$SIZE" --agents "${AGENTS_STEP[@]}" --seconds 3 "${QUICK[@]}"
run_step action_latency "${CAPS[1]}" action_latency.json "$PY" "$ROOT/benchmarks/action_latency.py" \
    --configs "$SIZE" --agents "${AGENTS_LATENCY[@]}" --all-cores --reps 5 "${QUICK[@]}"
run_step multi_seed "${CAPS[2]}" multi_seed.json "$PY" "$ROOT/benchmarks/multi_seed.py" \
    --size "$SIZE" --agents qam --seeds "${SEEDS[@]}" "${QUICK[@]}"

# ---- 5. the training run: waits for the dataset (its lock), trains until the budget's end
TRAIN_LIMIT=$(( $(left) - RESERVE ))
if [ "$TRAIN_LIMIT" -lt 10 ]; then  # no time to train: the dataset is not waited for
    kill "$DATASET_PID" 2>/dev/null
    wait "$DATASET_PID" 2>/dev/null
    record dataset skipped $((SECONDS - DATASET_START)) "stopped: budget spent"
    code=1
else
    wait "$DATASET_PID"
    code=$?
    if [ "$code" -eq 0 ]; then
        took=$("$PY" -c "import json, sys; print(round(json.load(open(sys.argv[1]))['seconds']))" "$OUT/dataset.json")
        record dataset ok "$took" "on the CPU cores, beside the benchmarks"
    else
        tail -n 5 "$WORK/dataset.err" >&2
        record dataset error $((SECONDS - DATASET_START)) "exit code $code"
    fi
fi
TRAIN_LIMIT=$(( $(left) - RESERVE ))
if [ "$code" -eq 0 ] && [ "$TRAIN_LIMIT" -ge 10 ]; then
    run_step training_run "$(left)" "" "$PY" "$ROOT/benchmarks/gpu_run.py" train \
        --data-dir "$DATA" --episodes "$EPISODES" --workers "$WORKERS" \
        --run-dir "$WORK/run/qam" --time-limit "$TRAIN_LIMIT" --out "$OUT/training_run.json" \
        "${DRYFLAG[@]}"
else
    record training_run skipped 0 "no dataset, or under 10 s of budget left"
fi

# ---- the record of the suite itself, and the page's table
"$PY" - "$STEPS_JSON" "$OUT/suite.json" "$BUDGET" "$DRY" "$BACKEND" <<'EOF'
import json, platform, subprocess, sys, time
steps_path, out, budget, dry, backend = sys.argv[1:]
steps = [json.loads(line) for line in open(steps_path)]
try:
    gpu = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
        capture_output=True, text=True, timeout=20,
    ).stdout.strip() or None
except (OSError, subprocess.SubprocessError):
    gpu = None
import jax
report = dict(
    suite="gpu_suite", dry_run=dry == "1", backend=backend, budget_s=int(budget),
    seconds_in_budget=sum(s["seconds"] for s in steps if s["step"] not in ("install", "dataset")),
    date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), gpu=gpu,
    jax=jax.__version__, devices=[str(d) for d in jax.devices()], python=platform.python_version(),
    steps=steps,
)
open(out, "w").write(json.dumps(report, indent=2) + "\n")
EOF
"$PY" "$ROOT/benchmarks/tables.py" --gpu "$OUT" || echo "[gpu_suite] tables.py --gpu failed" >&2
echo "[gpu_suite] results in $OUT" >&2
# exit 1 if a step failed (a step stopped by the budget is a result, not a failure)
! grep -q '"status": "error"' "$STEPS_JSON"
