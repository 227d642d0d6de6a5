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

collect_students() {  # OUT JOBS_CSV: every student's provenance into OUT/students/, the job times
  mkdir -p "$1/students"
  local f
  for f in results/distill/*/steps*/provenance.json; do
    cp "$f" "$1/students/$(echo "$f" | cut -d/ -f3,4 | tr / -).json"
  done
  "$PY" benchmarks/job_times.py collect results/benchmarks --out "$2" >/dev/null 2>&1 || true
}
