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
# `start` prepares the run and launches it through benchmarks/h200_dag.sh (snakemake in its own
# session, outliving the command; each call waits up to WAIT_S seconds, default 540); `wait`
# waits again. Whichever sees snakemake finish prints the job times and the projection, and
# copies them, the table and an archive of the metrics and logs to $OUT if set.
# Packages the machine lacks (diffusers, torch-fidelity, snakemake, ...) come from wheels in .whl/
# (benchmarks/fetch_wheels.sh downloads them where pip works).
set -euo pipefail
MODE=${1:-start}
if [ "$MODE" = start ]; then
  if compgen -G ".whl/*.whl" >/dev/null && ! python3 -c 'import diffusers, torch_fidelity, snakemake' 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  fi
  [ -d /tmp/site ] && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
  N=${2:-5000}
  SHARD=${3:-2500}
  shift $(( $# < 3 ? $# : 3 ))
  python3 -c 'import torch, diffusers, torch_fidelity, snakemake; print("torch", torch.__version__, "diffusers", diffusers.__version__, "torch-fidelity", torch_fidelity.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")'
  rm -rf results logs .snakemake resources/checkpoints
  python3 benchmarks/cifar10_acceptance.py prepare --n-samples "$N" --shard-size "$SHARD" "$@"
  POST='python3 benchmarks/cifar10_acceptance.py report; [ -n "${OUT:-}" ] && cp results/acceptance/projection.json "$OUT"/ || true' \
    exec bash benchmarks/h200_dag.sh start results/table1.csv --configfile=results/acceptance/cifar10-acceptance.yaml --resources gpu=1
elif [ "$MODE" = wait ]; then
  exec bash benchmarks/h200_dag.sh wait
fi
echo "usage: $0 start [N_SAMPLES] [SHARD_SIZE] [prepare options] | $0 wait" >&2
exit 2
