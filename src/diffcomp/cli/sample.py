"""Generate one shard of images (indices [start, end), seed = base seed + index) for a variant.

Finished batches are kept in ``--state-dir`` (undeclared by the workflow, so a killed job keeps
them); a rerun of the same job skips them and the shard equals an uninterrupted run's, bit for
bit on CPU, since every batch depends only on its own indices.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from ..models.config import COMPILE_MODES, PRECISIONS, SamplerConfig
from ..io import load_npz, save_npz
from ._common import pick_device, section, set_threads

log = logging.getLogger(__name__)


# On a CPU a batch whose activations stay in cache is faster per image: the default model, one
# thread, 7.5 ms per image and step at batch 32 against 11.4 at 250 (a W4A8 model; FP 8 vs 10).
CPU_BATCH = 32
GPU_BATCH = 250


def default_batch_size(device: str) -> int:
    return CPU_BATCH if str(device) == "cpu" else GPU_BATCH


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="FP diffusers folder")
    p.add_argument("--quantized", default=None, help="quantized model (quantize's output); FP if absent")
    p.add_argument("--sampler", default=None, help="sampler section as JSON")
    p.add_argument("--start", type=int, required=True)
    p.add_argument("--end", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"images per batch (default: {CPU_BATCH} on a CPU, {GPU_BATCH} on a GPU)")
    p.add_argument("--out", required=True, help="shard .npz")
    p.add_argument("--state-dir", default=None, help="keeps finished batches across retries")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="fp32 (exact: TF32 off), tf32, or bf16 (autocast; the GPU fast path)")
    p.add_argument("--compile", default=None, choices=COMPILE_MODES, help="torch.compile mode (eager if absent)")


def _state_key(args, cfg: SamplerConfig, device: str) -> str:
    """Batches are reused only for the same model files, sampler, seed, batching and device."""
    h = hashlib.sha256()
    for path in [args.model, args.quantized]:
        if path:
            for f in sorted(Path(path).rglob("*")) if Path(path).is_dir() else [Path(path)]:
                if f.is_file():
                    st = f.stat()
                    h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(json.dumps([cfg.__dict__, args.start, args.end, args.seed, args.batch_size, device, args.precision,
                         args.compile]).encode())
    return h.hexdigest()[:16]


def run(args) -> None:
    import torch
    from tqdm.auto import tqdm

    from contextlib import ExitStack

    from ..io import FileError

    from ..data.fmnist import to_uint8
    from ..models.sampler import compiled, generate, model_timesteps, set_precision, unet_fn
    from ..models.conditioning import guided, labels_for, num_classes
    from ..models.pipeline import load_pipeline

    if not 0 <= args.start < args.end:
        raise SystemExit(f"bad shard range [{args.start}, {args.end})")
    set_threads(args.threads)
    device = pick_device(args.device)
    if args.batch_size is None:
        args.batch_size = default_batch_size(device)
    elif args.batch_size < 1:
        raise SystemExit(f"--batch-size must be at least 1, got {args.batch_size}")
    autocast = set_precision(args.precision, device)
    cfg = section(SamplerConfig, args.sampler, "sampler")
    state = Path(args.state_dir) / _state_key(args, cfg, device) if args.state_dir else None
    pipe = load_pipeline(args.model, device="cpu")
    if args.quantized:
        from ..quant.inference import frozen
        from ..quant.wrap import load_quantized

        pipe.unet = load_quantized(pipe.unet, args.quantized)
    pipe.to(device).unet.eval()
    fn = unet_fn(compiled(pipe.unet, args.compile), autocast, pipe.prediction_type, pipe.alphas_cumprod)
    classes = num_classes(pipe.unet)
    if classes is not None:  # label i mod K for image i; guidance through the null class K
        fn = guided(fn, cfg.guidance, null_label=classes)
    decode = pipe.decode if pipe.vae is not None else None
    shape = pipe.sample_shape
    t0 = time.time()
    chunks, reused = [], 0
    with ExitStack() as stack:
        if args.quantized:
            steps = model_timesteps(pipe.num_train_timesteps, cfg)
            try:  # per-timestep parameters for every step this sampler visits (a compiled graph cannot check)
                stack.enter_context(frozen(pipe.unet, autocast, steps))
            except KeyError as e:
                raise FileError(f"{args.quantized}: {e.args[0]}; sample it with the sampler it was calibrated for") from None
        for s in tqdm(range(args.start, args.end, args.batch_size), desc=f"sample {Path(args.out).name}", mininterval=5):
            idx = list(range(s, min(s + args.batch_size, args.end)))
            chunk_path = state / f"{idx[0]:08d}-{idx[-1] + 1:08d}.npz" if state else None
            if chunk_path is not None and chunk_path.exists():
                chunks.append(load_npz(chunk_path, {"images": "uint8"})["images"])
                reused += len(idx)
                continue
            # A compiled UNet keeps one batch shape: a short last batch is padded with images of
            # the next indices (each image depends only on its own seed) and those are dropped.
            run_idx = idx + list(range(idx[-1] + 1, s + args.batch_size)) if args.compile else idx
            labels = labels_for(run_idx, classes) if classes is not None else None
            images = to_uint8(generate(fn, run_idx, shape, pipe.alphas_cumprod, cfg, args.seed, device, labels=labels,
                                       decode=decode)[: len(idx)])
            if chunk_path is not None:
                save_npz(chunk_path, images=images)
            chunks.append(images)
    images = np.concatenate(chunks)
    save_npz(args.out, images=images, indices=np.arange(args.start, args.end))
    if state is not None:
        shutil.rmtree(state, ignore_errors=True)
    dt = time.time() - t0
    log.info("%d images (%d reused from an interrupted run) in %.1f s (in batches of %d, %s%s)", len(images), reused,
             dt, args.batch_size, args.precision, f", compiled {args.compile}" if args.compile else "")
