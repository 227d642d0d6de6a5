#!/usr/bin/env bash
# Any target of the workflow on one GPU machine whose commands have a time limit (the workflow
# outlives the command): snakemake runs in its own session, and every call waits for it at most
# WAIT_S seconds. When it has finished, the call that sees it writes every job's time
# (benchmarks/job_times.py), the tables it made, and an archive of the metrics, benchmark files
# and logs to $OUT (if set).
#
# Run from the repository root:
#   bash benchmarks/h200_dag.sh start TARGET [snakemake options]   # e.g.
#   bash benchmarks/h200_dag.sh start results/table1.csv --config device=cuda 'evaluation={precision: bf16, compile: default}'
#   bash benchmarks/h200_dag.sh wait                                 # again, until it reports
# Environment: WAIT_S (default 540, under a 10-minute command limit), PY (default python3),
# CORES (default all), POST (a command run once snakemake has finished, before the report).
# Packages the machine lacks come from wheels in .whl/ (benchmarks/fetch_wheels.sh).
set -euo pipefail
MODE=${1:-}
WAIT_S=${WAIT_S:-540}
PY=${PY:-python3}
RUN=results/h200
LOG=$RUN/snakemake.log
if ! "$PY" -c 'import snakemake, diffusers' 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
elif [ -d /tmp/site ]; then
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1

case "$MODE" in
  start)
    [ $# -ge 2 ] || { echo "usage: $0 start TARGET [snakemake options]" >&2; exit 2; }
    shift
    if [ -e "$RUN/start" ] && [ ! -e "$RUN/rc" ]; then
      echo "a run started at $(date -d @"$(cat "$RUN/start")") is still going: '$0 wait'" >&2
      exit 2
    fi
    rm -rf "$RUN"
    mkdir -p "$RUN"
    printf '%q ' "$@" > "$RUN/args"
    printf '%s' "${POST:-}" > "$RUN/post"
    date +%s > "$RUN/start"
    # shellcheck disable=SC2016
    setsid nohup bash -c '"$0" -m snakemake --cores "$1" "${@:3}" > "$2" 2>&1; echo $? > "$(dirname "$2")/rc"' \
      "$PY" "${CORES:-all}" "$LOG" "$@" >/dev/null 2>&1 &
    ;;
  wait) [ -e "$RUN/start" ] || { echo "nothing started: '$0 start TARGET ...'" >&2; exit 2; } ;;
  *) echo "usage: $0 start TARGET [snakemake options] | $0 wait" >&2; exit 2 ;;
esac

deadline=$(( $(date +%s) + WAIT_S ))
while [ ! -e "$RUN/rc" ] && [ "$(date +%s)" -lt "$deadline" ]; do
  sleep 10
  grep -E "steps? \([0-9]+%\) done" "$LOG" 2>/dev/null | tail -1 || true
done
elapsed=$(( $(date +%s) - $(cat "$RUN/start") ))
if [ ! -e "$RUN/rc" ]; then
  echo "STILL RUNNING after $elapsed s: call '$0 wait' again (within the machine's idle time)"
  exit 0
fi
rc=$(cat "$RUN/rc")
echo "snakemake $(cat "$RUN/args")finished (rc $rc) after $(( $(stat -c %Y "$RUN/rc") - $(cat "$RUN/start") )) s"
tail -n 3 "$LOG"
post=$(cat "$RUN/post")
[ -n "$post" ] && bash -c "$post"
[ -d results/benchmarks ] && "$PY" benchmarks/job_times.py collect results/benchmarks --out "$RUN/jobs.csv"
if [ -n "${OUT:-}" ]; then
  cp "$LOG" "$OUT"/
  [ -e "$RUN/jobs.csv" ] && cp "$RUN/jobs.csv" "$OUT"/
  for t in results/table*.md results/table*.csv; do [ -e "$t" ] && cp "$t" "$OUT"/; done
  tar czf "$OUT/run.tgz" results/benchmarks results/metrics logs 2>/dev/null || true
fi
exit "$rc"
