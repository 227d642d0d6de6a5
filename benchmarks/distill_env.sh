# Sourced by benchmarks/h200_distill_*.sh: the settings both drivers of config/fmnist-distill-gpu.yaml
# take from the environment. PY (python3); CFG, the config option; DATA, the --config items
# (DATASET_ROOT's dataset root, then CONFIG_EXTRA's lines); SMK, SNAKEMAKE_ARGS split on spaces.
PY=${PY:-python3}
CFG=--configfile=config/fmnist-distill-gpu.yaml
DATA=()
[ -n "${DATASET_ROOT:-}" ] && DATA=("dataset={root: $DATASET_ROOT}")
if [ -n "${CONFIG_EXTRA:-}" ]; then
  while IFS= read -r item; do [ -n "$item" ] && DATA+=("$item"); done <<<"$CONFIG_EXTRA"
fi
read -r -a SMK <<<"${SNAKEMAKE_ARGS:-}"
# The config's table-3 variants by chain: PD's (with the DDIM rows), each RDD row's, the ablations
# of PD's first stage together, each ablation row alone, and the two budget ablations together.
declare -A CHAIN_ROWS=([pd]="fp-s1 fp-s2 fp-s4 fp-s8 fp-s16 pd-s1 pd-s2 pd-s4 pd-s8"
                       [rdd]="rdd-s1 rdd-s2 rdd-s4" [rdd_pd]="rdd_pd-s1 rdd_pd-s2 rdd_pd-s4"
                       [pd_eps]="pd_eps-s8" [pd_clip]="pd_clip-s8" [pd_long]="pd_long-s8"
                       [pd_eps_long]="pd_eps_long-s8" [pd_eps_v]="pd_eps_v-s4 pd_eps_v-s2 pd_eps_v-s1")
ABLATION_ROWS=(pd_eps pd_clip pd_long pd_eps_long pd_eps_v)  # each a chain of its own, and together "ablations"
CHAIN_ROWS[ablations]=""
for r in "${ABLATION_ROWS[@]}"; do CHAIN_ROWS[ablations]+="${CHAIN_ROWS[ablations]:+ }${CHAIN_ROWS[$r]}"; done
CHAIN_ROWS[budget]="${CHAIN_ROWS[pd_long]} ${CHAIN_ROWS[pd_eps_long]}"  # the two longer first stages, side by side

collect_students() {  # OUT JOBS_CSV: every student's provenance into OUT/students/, the job times
  mkdir -p "$1/students"
  local f
  for f in results/distill/*/steps*/provenance.json; do
    cp "$f" "$1/students/$(echo "$f" | cut -d/ -f3,4 | tr / -).json"
  done
  "$PY" benchmarks/job_times.py collect results/benchmarks --out "$2" >/dev/null 2>&1 || true
}
