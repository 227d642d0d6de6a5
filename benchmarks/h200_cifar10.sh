#!/usr/bin/env bash
# The CIFAR-10 paper DAG on one GPU with stand-ins (random weights of the CIFAR-10 DDPM
# architecture fetched from a file:// URL and converted, random Inception weights, a random
# ADM reference batch): FP and Q-Diffusion W4A8 (reconstruction shortened to 400 + 100
# iterations per block), N samples each, through snakemake on CUDA; then every job's time and the
# projection of config/cifar10.yaml's full table on 1 and 8 GPUs (benchmarks/cifar10_acceptance.py).
#
# Run from the repository root:
#   bash benchmarks/h200_cifar10.sh start [N_SAMPLES] [SHARD_SIZE] [prepare options]
#   bash benchmarks/h200_cifar10.sh wait
# `start` launches snakemake in its own session (it outlives the command) and waits up to
# WAIT_S seconds (default 540, under a 10-minute command limit); `wait` waits again. Whichever
# sees snakemake finish prints the job times and the projection, and copies them to $OUT if set.
# Packages the machine lacks (diffusers, torch-fidelity, snakemake, ...) come from wheels in .whl/
# (benchmarks/fetch_wheels.sh downloads them where pip works).
set -euo pipefail
MODE=${1:-start}
WAIT_S=${WAIT_S:-540}
LOG=results/acceptance/snakemake.log
if compgen -G ".whl/*.whl" >/dev/null && [ ! -e /tmp/site/.diffcomp-wheels ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  touch /tmp/site/.diffcomp-wheels
fi
[ -d /tmp/site ] && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1

if [ "$MODE" = start ]; then
  N=${2:-5000}
  SHARD=${3:-2500}
  shift $(( $# < 3 ? $# : 3 ))
  python3 -c 'import torch, diffusers, torch_fidelity, snakemake; print("torch", torch.__version__, "diffusers", diffusers.__version__, "torch-fidelity", torch_fidelity.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")'
  rm -rf results logs .snakemake resources/checkpoints
  python3 benchmarks/cifar10_acceptance.py prepare --n-samples "$N" --shard-size "$SHARD" "$@"
  date +%s > results/acceptance/start
  setsid nohup bash -c 'python3 -m snakemake results/table1.csv --configfile=results/acceptance/cifar10-acceptance.yaml \
    --cores "$(nproc)" --resources gpu=1 > '"$LOG"' 2>&1; echo $? > results/acceptance/rc' >/dev/null 2>&1 &
elif [ "$MODE" != wait ]; then
  echo "usage: $0 start [N_SAMPLES] [SHARD_SIZE] [prepare options] | $0 wait" >&2
  exit 2
fi

deadline=$(( $(date +%s) + WAIT_S ))
while [ ! -e results/acceptance/rc ] && [ "$(date +%s)" -lt "$deadline" ]; do
  sleep 15
  grep -E "^\[|^(local)?rule |steps? \([0-9]+%\) done" "$LOG" 2>/dev/null | tail -2 | tr '\n' ' '; echo
done
if [ ! -e results/acceptance/rc ]; then
  echo "STILL RUNNING after $(( $(date +%s) - $(cat results/acceptance/start) )) s: call '$0 wait' again within 30 s"
  exit 0
fi
rc=$(cat results/acceptance/rc)
echo "snakemake finished (rc $rc) after $(( $(stat -c %Y results/acceptance/rc) - $(cat results/acceptance/start) )) s"
tail -5 "$LOG"
python3 benchmarks/cifar10_acceptance.py report
[ -e results/table1.md ] && cat results/table1.md
if [ -n "${OUT:-}" ]; then
  cp results/acceptance/projection.json "$LOG" "$OUT"/
  [ -e results/table1.md ] && cp results/table1.md "$OUT"/
  tar czf "$OUT/benchmarks.tgz" results/benchmarks logs results/metrics 2>/dev/null || true
fi
exit "$rc"
