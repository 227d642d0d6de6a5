#!/usr/bin/env bash
# The CIFAR-10 paper DAG on one GPU with stand-ins (random weights of the CIFAR-10 DDPM
# architecture fetched from a file:// URL and converted, random Inception weights, a random
# ADM reference batch): FP, Linear Quant W4A8 and Q-Diffusion W4A8 (shortened reconstruction),
# N samples each, through snakemake on CUDA; then every job's time and the projection of the
# full 50k table on 1 and 8 GPUs (benchmarks/cifar10_acceptance.py).
# Run from the repository root: bash benchmarks/h200_cifar10.sh [N_SAMPLES] [SHARD_SIZE]
# Packages the machine lacks (diffusers, torch-fidelity, snakemake, ...) come from wheels in .whl/
# (benchmarks/fetch_wheels.sh downloads them on a machine with pip access).
set -euo pipefail
N=${1:-5000}
SHARD=${2:-2500}
shift $(( $# < 2 ? $# : 2 ))  # the rest goes to `prepare` (e.g. --iters-w 800)
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
python3 -c 'import torch, diffusers, torch_fidelity, snakemake; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")'
rm -rf results logs .snakemake resources/checkpoints
python3 benchmarks/cifar10_acceptance.py prepare --n-samples "$N" --shard-size "$SHARD" "$@"
start=$(date +%s)
python3 -m snakemake results/table1.csv --configfile=results/acceptance/cifar10-acceptance.yaml --cores "$(nproc)" \
  --resources gpu=1
echo "snakemake wall time: $(( $(date +%s) - start )) s"
python3 benchmarks/cifar10_acceptance.py report
cat results/table1.md
if [ -n "${OUT:-}" ]; then
  cp results/acceptance/projection.json results/table1.md "$OUT"/
  tar czf "$OUT/benchmarks.tgz" results/benchmarks logs
fi
