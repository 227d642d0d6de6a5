#!/usr/bin/env bash
# config/fmnist-distill-gpu.yaml's table 3 on a GPU machine lent for sessions shorter than the
# whole chain: two parts that share only PD's 8-step student, one folder of about 5 MB. Measured on
# an H200 (TF32, compiled, one CUDA graph per iteration): PD's stages took 192, 154 and 301 s for
# 16 -> 8, 8 -> 4 and 4 -> 2 (the 2 -> 1 stage ran at 68 it/s, about 300 s), so the pd part needs
# about 17 minutes with its sampling and evaluation; each RDD row's three stages about 17 more.
#
#   bash benchmarks/h200_distill_split.sh pd OUT
#       PD's chain (16 -> 8 -> 4 -> 2 -> 1) and the DDIM (FP teacher) and PD rows, sampled and
#       evaluated with both seed sets; OUT/s0/ and OUT/s100000/ get their metrics, OUT/pd-s8.tgz
#       the 8-step student, OUT/students/ every student's provenance (its stage diagnostics).
#   bash benchmarks/h200_distill_split.sh rdd OUT PD_S8_TGZ
#       both RDD rows (RDD, RDD + PD loss: 8 -> 4 -> 2 -> 1) from that student, same outputs.
#   bash benchmarks/h200_distill_split.sh ablations OUT [ROW ...]
#       the config's ablations of PD's first stage (16 -> 8 from the FP model: pd_eps, pd_clip,
#       pd_long, pd_eps_long; about 3.5 minutes each alone, pd_long 13, pd_eps_long 7) and our chain pd_eps_v (4 -> 2 -> 1 from
#       pd_eps's student, about 13 minutes), all four or the ROWs named, same outputs. They need only
#       the FP model; snakemake runs independent stages side by side (two on one H200: 1.24x the
#       throughput of one after the other).
#
# Run from the repository root. Environment: PY (python3), CORES (all), DATASET_ROOT (the
# Fashion-MNIST files' folder, if not the config's), CONFIG_EXTRA (more --config items, one per
# line, e.g. 'distillation={precision: fp32, compile: null}'; give the rdd part the pd part's,
# or the student's changed params rebuild it), SNAKEMAKE_ARGS (more snakemake options, split on
# spaces, e.g. '--scheduler greedy' where the ILP solver's package is missing). The rdd part makes the dataset first, then
# unpacks the student with a newer modification time and runs snakemake with
# --rerun-triggers mtime params (a student without snakemake's records is judged by its files' times; the
# second seed set reruns the sample and evaluate jobs through their params), so the student is
# taken as made, not rebuilt.
set -euo pipefail
PART=${1:-}
OUT=${2:-}
USAGE="usage: $0 pd OUT | $0 rdd OUT PD_S8_TGZ | $0 ablations OUT [ROW ...]"
[ -n "$OUT" ] || { echo "$USAGE" >&2; exit 2; }
# shellcheck source=benchmarks/distill_env.sh
source "$(dirname "$0")/distill_env.sh"
mkdir -p "$OUT"

case "$PART" in
  pd) read -r -a targets <<<"${CHAIN_ROWS[pd]}" ;;
  rdd)
    tgz=${3:-}
    [ -f "$tgz" ] || { echo "$0 rdd: give the pd part's pd-s8.tgz" >&2; exit 2; }
    "$PY" -m snakemake results/data/train.npz --cores "${CORES:-all}" "${SMK[@]}" "$CFG" --config "${DATA[@]}" "evaluation={seed: 0}"
    mkdir -p results/distill/pd
    tar xzf "$tgz" -C results/distill/pd
    find results/distill/pd/steps8 -type f -exec touch {} +
    read -r -a targets <<<"${CHAIN_ROWS[rdd]} ${CHAIN_ROWS[rdd_pd]}"
    ;;
  ablations)
    shift 2
    rows=("$@")
    [ ${#rows[@]} -gt 0 ] || rows=("${ABLATION_ROWS[@]}")
    targets=()
    for r in "${rows[@]}"; do
      [[ " ${ABLATION_ROWS[*]} " == *" $r "* ]] ||
        { echo "$0 ablations: no row '$r' (${ABLATION_ROWS[*]})" >&2; exit 2; }
      read -r -a more <<<"${CHAIN_ROWS[$r]}"
      targets+=("${more[@]}")
    done
    ;;
  *) echo "$USAGE" >&2; exit 2 ;;
esac

metrics=()
for v in "${targets[@]}"; do metrics+=("results/metrics/$v.json"); done
for seed in 0 100000; do
  echo "=== $PART, seed set $seed, $(date +%T)"
  "$PY" -m snakemake "${metrics[@]}" --cores "${CORES:-all}" "${SMK[@]}" --rerun-triggers mtime params \
    "$CFG" --config "${DATA[@]}" "evaluation={seed: $seed}" > "$OUT/snakemake_${PART}_${seed}.log" 2>&1
  mkdir -p "$OUT/s$seed"
  for v in "${targets[@]}"; do cp "results/metrics/$v.json" "$OUT/s$seed/"; done
done
if [ "$PART" = pd ]; then
  tar czf "$OUT/pd-s8.tgz" -C results/distill/pd steps8
fi
collect_students "$OUT" "$OUT/jobs_$PART.csv"
echo "=== done $(date +%T)"
