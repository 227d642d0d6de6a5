#!/usr/bin/env bash
# EDA-DM's quantize job at the paper's iteration count (5000 FBR iterations per block, 1024
# calibration inputs from as many trajectories) on the default model, W4A8, on one GPU; then its
# FID (two seed sets of 500 samples, the default classifier) and per-step diagnostics.
#
#   bash benchmarks/edadm_h200.sh [OUT]
#
# Needs the workflow's held-out trajectories and reference statistics of the default config
# (results/calib/heldout.safetensors, results/reference/fmnist-classifier-test.npz; make them
# with `snakemake -c2 results/calib/heldout.safetensors results/reference/fmnist-classifier-test.npz`)
# and a virtual environment in .venv. Captures 1024 FP trajectories first (same sampler and seed
# as the default's calibration capture). Prints the quantize time and the FID per seed set.
set -euo pipefail
OUT=${1:-results/ablations/edadm_h200}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
DEV=$($PY -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')
N=${EDADM_N:-1024}
if [ ! -f "$OUT/trajectories-$N.safetensors" ]; then
  $PY -m diffcomp.cli trajectories --model resources/models/fmnist-ddpm \
    --sampler '{"name": "ddim", "steps": 10, "eta": 0.0, "skip": "uniform", "clip_x0": false}' \
    --cfg "{\"n_trajectories\": $N, \"batch_size\": 256, \"seed\": 1000000}" \
    --out "$OUT/trajectories-$N.safetensors" --device "$DEV"
fi
VARIANTS=${VARIANTS:-benchmarks/ablations/edadm_h200.json}
TIMEFORMAT="ablations.py: wall %R s"  # bash time: /usr/bin/time is not on every machine
time $PY benchmarks/ablations.py "$VARIANTS" --out "$OUT" \
  --trajectories "$OUT/trajectories-$N.safetensors" ${ABL_ARGS:-}
tail -n 1 "$OUT/results.jsonl" | $PY -c 'import json, sys; r = json.loads(sys.stdin.read()); print("quantize_s", r["quantize_s"], {s: round(v["fid"], 2) for s, v in r["seeds"].items()})'
