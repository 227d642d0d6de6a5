#!/usr/bin/env bash
# config/fmnist-distill-gpu.yaml's whole table 3 on one machine of three or more GPUs, in about the
# time of PD's chain plus one RDD row (~25 minutes on H200s) instead of their sum:
#
#   bash benchmarks/h200_distill_gpus.sh OUT [CHAIN ...]
#
# GPU 0 makes PD's 8-step student (the one input the chains share), then one snakemake run per
# chain goes on side by side, chain i on GPU i: pd (PD's 8 -> 4 -> 2 -> 1, and the DDIM rows), rdd
# and rdd_pd (RDD's and RDD + PD loss's 4 -> 2 -> 1 from PD's 8-step student), ablations (the
# config's ablations of PD's first stage, pd_eps, pd_clip, pd_long, pd_eps_long, and our chain from
# pd_eps's student, pd_eps_v; or any one of those rows as its own chain; or budget, pd_long and
# pd_eps_long side by side on one GPU); each then samples and evaluates
# its rows with both seed sets. Without CHAINs: pd, rdd and rdd_pd, and ablations where there is a
# fourth GPU. Naming fewer chains fits fewer GPUs: on two, `OUT rdd rdd_pd` gives both RDD rows in
# the time of one, `OUT budget pd_eps_v` the three longest ablations (PD's student is made first
# only for pd, rdd and rdd_pd). Each chain gets an equal share of the CPUs (at least 5), so a
# chain's independent stages run side by side on its GPU. The runs share the working
# directory (--nolock): their targets are disjoint and everything upstream of them is made before
# they start. OUT/s0/ and OUT/s100000/ get the metrics, OUT/students/ every student's provenance,
# OUT/*.log each run's snakemake log.
#
# Run from the repository root. Environment: PY (python3), DATASET_ROOT, CONFIG_EXTRA and
# SNAKEMAKE_ARGS as for benchmarks/h200_distill_split.sh.
set -euo pipefail
OUT=${1:-}
[ -n "$OUT" ] || { echo "usage: $0 OUT [CHAIN ...]" >&2; exit 2; }
shift
chains=("$@")
# shellcheck source=benchmarks/distill_env.sh
source "$(dirname "$0")/distill_env.sh"
ngpu=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
if [ ${#chains[@]} -eq 0 ]; then
  chains=(pd rdd rdd_pd)
  if [ "$ngpu" -ge 4 ]; then chains+=(ablations); fi
fi
[ "$ngpu" -ge ${#chains[@]} ] ||
  { echo "$0: needs ${#chains[@]} GPUs for ${chains[*]}, found $ngpu (name fewer chains, or use h200_distill_split.sh)" >&2; exit 2; }

cores=$(($(nproc) / ${#chains[@]}))
[ "$cores" -ge 5 ] || cores=5
smk() {  # GPU LOG SEED TARGET...
  local gpu=$1 log=$2 seed=$3
  shift 3
  CUDA_VISIBLE_DEVICES=$gpu "$PY" -m snakemake "$@" --cores "$cores" --nolock "${SMK[@]}" --rerun-triggers mtime params \
    "$CFG" --config "${DATA[@]}" "evaluation={seed: $seed}" >>"$OUT/$log.log" 2>&1
}

shared=(results/data/train.npz results/reference/fmnist-classifier-test.npz)
from_pd=0  # PD's 8-step student is made first when a chain starts from it
for c in "${chains[@]}"; do
  [ -n "${CHAIN_ROWS[$c]:-}" ] || { echo "$0: no chain '$c' (pd, rdd, rdd_pd, ablations, budget, or one ablation row)" >&2; exit 2; }
  case "$c" in pd | rdd | rdd_pd) from_pd=1 ;; esac
done
[ "$from_pd" = 0 ] || shared=(results/distill/pd/steps8/provenance.json "${shared[@]}")
mkdir -p "$OUT"
echo "=== the shared inputs (${shared[*]}), $(date +%T)"
smk 0 shared 0 "${shared[@]}"

chain() {  # GPU ROW
  local gpu=$1 row=$2 seed targets=()
  for v in ${CHAIN_ROWS[$row]}; do targets+=("results/metrics/$v.json"); done
  for seed in 0 100000; do
    smk "$gpu" "$row" "$seed" "${targets[@]}"
    mkdir -p "$OUT/s$seed"
    for v in ${CHAIN_ROWS[$row]}; do cp "results/metrics/$v.json" "$OUT/s$seed/"; done
  done
  echo "=== $row done, $(date +%T)"
}
echo "=== ${chains[*]} on GPUs 0-$((${#chains[@]} - 1)), $(date +%T)"
pids=()
for i in "${!chains[@]}"; do
  chain "$i" "${chains[$i]}" &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
collect_students "$OUT" "$OUT/jobs.csv"
echo "=== done $(date +%T), rc $rc"
exit $rc
