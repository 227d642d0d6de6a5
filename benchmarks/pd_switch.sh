#!/usr/bin/env bash
# Where PD's students should change from the teacher's eps output to v, on the default's budget
# (60 iterations per stage at batch 32, 120 for the 1- and 2-step students): the default config's
# PD rows (v throughout, the paper's; eps throughout, the labelled "PD, eps students") plus three
# chains given through --config, each the default PD recipe with eps students up to a stage and v
# from the next on (from 8 -> 4, 4 -> 2 and 2 -> 1, each taking the eps chain's student as its
# first teacher), beside the FP teacher's DDIM, with both seed sets.
#
#   bash benchmarks/pd_switch.sh OUT [CORES]
#
# OUT/s0/ and OUT/s100000/ get the metrics, OUT/students/ every student's provenance, OUT/jobs.csv
# the job times; then
# benchmarks/distill_record.py makes the record and figure (docs/results.md, "Where the students
# change to v"). About 25 minutes on two CPU cores. Run from the repository root; PY as for the
# other drivers (python3), SNAKEMAKE_ARGS (more snakemake options).
set -euo pipefail
OUT=${1:-}
[ -n "$OUT" ] || { echo "usage: $0 OUT [CORES]" >&2; exit 2; }
# shellcheck source=benchmarks/distill_env.sh
source "$(dirname "$0")/distill_env.sh"  # PY, SMK and collect_students (its CFG, the GPU config, is not used here)
common='method: pd, label: "%s", iters: 60, low_step_factor: 2, batch_size: 32, lr: 1.0e-5, parameterization: v'
row() { printf "%s: {$common%s}" "$1" "$2" "$3"; }
rows=$(printf '%s, ' \
  "$(row pd_v4 'PD, eps to 8 steps, v from 8 -> 4' ', teacher: pd_eps, steps: [4, 2, 1]')" \
  "$(row pd_v2 'PD, eps to 4 steps, v from 4 -> 2' ', teacher: pd_eps, steps: [2, 1]')" \
  "$(row pd_v1 'PD, eps to 2 steps, v for 2 -> 1' ', teacher: pd_eps, steps: [1]')")
extra="distillation={methods: {${rows%, }}}"
variants=(fp-s1 fp-s2 fp-s4 fp-s8 fp-s16 pd-s1 pd-s2 pd-s4 pd-s8 pd_eps-s1 pd_eps-s2 pd_eps-s4 pd_eps-s8
          pd_v4-s1 pd_v4-s2 pd_v4-s4 pd_v2-s1 pd_v2-s2 pd_v1-s1)
targets=()
for v in "${variants[@]}"; do targets+=("results/metrics/$v.json"); done
mkdir -p "$OUT"
for seed in 0 100000; do
  echo "=== seed set $seed, $(date +%T)"
  "$PY" -m snakemake "${targets[@]}" --cores "${2:-2}" "${SMK[@]}" --config "$extra" "evaluation={seed: $seed}" \
    > "$OUT/snakemake_$seed.log" 2>&1
  mkdir -p "$OUT/s$seed"
  for v in "${variants[@]}"; do cp "results/metrics/$v.json" "$OUT/s$seed/"; done
done
collect_students "$OUT" "$OUT/jobs.csv"
echo "=== done $(date +%T)"
