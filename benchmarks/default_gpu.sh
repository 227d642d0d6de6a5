#!/usr/bin/env bash
# The default config's tables on one GPU, repeated over calibration seeds (the seed of the FP
# trajectories every PTQ/QAT job calibrates on) and evaluation seed sets (the seeds of the 500
# samples per variant), to measure the spread the papers' claims are checked against.
#
#   bash benchmarks/default_gpu.sh start OUT   # launches, waits up to WAIT_S (default 540) seconds
#   bash benchmarks/default_gpu.sh wait OUT    # waits again (a 10-minute command limit)
#
# Every (calibration seed, evaluation seed) pair runs the workflow in its own copy of the
# repository under $WORK (default /tmp/default_gpu): the first evaluation seed of a calibration
# seed builds everything; the others start from a copy of its results, so Snakemake reruns only
# the jobs whose parameters changed (samples, metrics, diagnostics), not the quantize jobs.
# Environment: CAL_SEEDS (default "1000000 1000001"), EVAL_SEEDS ("0 100000"), TARGETS
# ("results/table1.csv results/table2.csv"), CORES per calibration seed (8), EXTRA_CONFIG (a
# config file run beside them with the first calibration seed and every evaluation seed, e.g. a
# longer QAT budget; its targets EXTRA_TARGETS, default TARGETS).
# Writes one archive per run to OUT (metrics, tables, diagnostics, benchmarks, logs) and prints
# each table. Packages the machine lacks come from wheels in .whl/ (benchmarks/fetch_wheels.sh).
set -euo pipefail
MODE=${1:-start}
OUT=${2:?usage: $0 start|wait OUT}
WORK=${WORK:-/tmp/default_gpu}
WAIT_S=${WAIT_S:-540}
ROOT=$PWD
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null && [ ! -e /tmp/site/.diffcomp-wheels ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  touch /tmp/site/.diffcomp-wheels
fi
[ -d /tmp/site ] && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1

configure() {  # configure SRC_YAML DST_YAML CAL_SEED EVAL_SEED
  python3 - "$@" <<'EOF'
import sys, yaml
src, dst, cal, ev = sys.argv[1:5]
cfg = yaml.safe_load(open(src))
cfg.setdefault("calibration", {})["seed"] = int(cal)
cfg.setdefault("evaluation", {})["seed"] = int(ev)
for r in cfg.get("resources", {}).values():
    r["threads"] = 2   # many small jobs side by side on one GPU
yaml.safe_dump(cfg, open(dst, "w"), sort_keys=False)
EOF
}

one_seed() {  # one_seed CONFIG CAL_SEED EVAL_SEEDS... : the runs of one calibration seed, in order
  local config=$1 cal=$2; shift 2
  local first=""
  for ev in "$@"; do
    local d="$WORK/$(basename "$config" .yaml)-c$cal-s$ev"
    if [ -z "$first" ]; then
      mkdir -p "$d"
      tar -C "$ROOT" --exclude=./.whl --exclude=./.exp --exclude=./.git --exclude=./results --exclude=./logs \
        --exclude=./.snakemake -cf - . | tar -C "$d" -xf -
      first=$d
    else
      cp -a "$first" "$d"
    fi
    configure "$ROOT/$config" "$d/run.yaml" "$cal" "$ev"
    local start=$(date +%s)
    (cd "$d" && python3 -m snakemake --configfile run.yaml --cores "${CORES:-8}" --scheduler greedy -k ${RUN_TARGETS:-$TARGETS} \
      > snakemake.log 2>&1) && rc=0 || rc=$?
    echo "$(basename "$d") rc $rc $(( $(date +%s) - start )) s" >> "$WORK/done"
  done
}

if [ "$MODE" = start ]; then
  rm -rf "$WORK"; mkdir -p "$WORK"
  python3 -c 'import torch, diffusers, snakemake; print("torch", torch.__version__, "diffusers", diffusers.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")'
  if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -d .exp/h200/fashion-mnist ]; then
    mkdir -p /usr/share/datasets && cp -r .exp/h200/fashion-mnist /usr/share/datasets/
  fi
  export -f configure one_seed
  export WORK ROOT TARGETS=${TARGETS:-"results/table1.csv results/table2.csv"}
  read -r -a evals <<< "${EVAL_SEEDS:-0 100000}"
  n=0
  for cal in ${CAL_SEEDS:-1000000 1000001}; do
    setsid nohup bash -c 'one_seed config/default.yaml "$@"' _ "$cal" "${evals[@]}" > "$WORK/seed-$cal.log" 2>&1 &
    n=$((n + ${#evals[@]}))
  done
  if [ -n "${EXTRA_CONFIG:-}" ]; then
    RUN_TARGETS=${EXTRA_TARGETS:-$TARGETS} setsid nohup bash -c 'one_seed "$@"' _ "$EXTRA_CONFIG" \
      "$(echo ${CAL_SEEDS:-1000000} | cut -d' ' -f1)" "${evals[@]}" > "$WORK/extra.log" 2>&1 &
    n=$((n + ${#evals[@]}))
  fi
  echo "$n" > "$WORK/expected"; date +%s > "$WORK/start"
elif [ "$MODE" != wait ]; then
  echo "usage: $0 start|wait OUT" >&2; exit 2
fi

deadline=$(( $(date +%s) + WAIT_S ))
finished() { [ -e "$WORK/done" ] && [ "$(wc -l < "$WORK/done")" -ge "$(cat "$WORK/expected")" ]; }
while ! finished && [ "$(date +%s)" -lt "$deadline" ]; do
  sleep 20
  echo "$(( $(date +%s) - $(cat "$WORK/start") )) s: $(cat "$WORK/done" 2>/dev/null | wc -l)/$(cat "$WORK/expected") runs;" \
    $(for d in "$WORK"/*/; do [ -e "$d/snakemake.log" ] && grep -o "[0-9]* of [0-9]* steps" "$d/snakemake.log" | tail -1; done | tr '\n' ';')
done
cat "$WORK/done" 2>/dev/null || true
for d in "$WORK"/*/; do
  [ -d "$d/results" ] || continue
  name=$(basename "$d")
  (cd "$d" && tar czf "$OUT/$name.tgz" --ignore-failed-read results/metrics results/diagnostics results/benchmarks \
    results/*.csv results/*.md logs snakemake.log run.yaml 2>/dev/null) || true
  for t in "$d"/results/table*.md; do [ -e "$t" ] && { echo "== $name $(basename "$t")"; cat "$t"; }; done
done
if ! finished; then
  echo "STILL RUNNING after $(( $(date +%s) - $(cat "$WORK/start") )) s: call '$0 wait $OUT' again within 30 s"
fi
