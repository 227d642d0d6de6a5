"""Export a quantized model as a packed integer checkpoint (usable without the workflow)."""

from __future__ import annotations

import logging
from pathlib import Path

from ..io import write_json

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="FP diffusers folder the model was quantized from")
    p.add_argument("--quantized", required=True, help="quantize's output (.safetensors)")
    p.add_argument("--out", required=True, help="packed integer checkpoint (.safetensors)")
    p.add_argument("--sizes", default=None, help="JSON with the export's size beside the FP checkpoint's")


def fp_checkpoint(model_dir: str | Path) -> Path:
    """The FP UNet's weight file in a diffusers folder."""
    root = Path(model_dir)
    for sub in ("unet", "."):
        f = root / sub / "diffusion_pytorch_model.safetensors"
        if f.is_file():
            return f
    raise SystemExit(f"{root}: no unet/diffusion_pytorch_model.safetensors")


def run(args) -> None:
    import torch

    from ..models.pipeline import load_pipeline
    from ..quant.export import export_quantized, load_export
    from ..quant.wrap import load_quantized, read_quantized

    pipe = load_pipeline(args.model, device="cpu")
    spec, _, meta, _ = read_quantized(args.quantized)
    config = dict(pipe.unet.config)
    model = load_quantized(pipe.unet, args.quantized)
    info = export_quantized(model, spec, config, args.out, meta={**meta, "source": Path(args.quantized).name})
    # The file must give the model back: one forward of both on the same input, bit for bit.
    back = load_export(args.out)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, config["in_channels"], config["sample_size"], config["sample_size"], generator=gen)
    t = torch.tensor([999, 10])
    with torch.no_grad():
        if not torch.equal(model(x, t).sample, back(x, t).sample):
            raise SystemExit(f"{args.out}: the exported model does not reproduce {args.quantized}")
    fp = fp_checkpoint(args.model)
    sizes = {"export": str(args.out), "export_bytes": info.bytes, "fp_checkpoint": str(fp),
             "fp_bytes": fp.stat().st_size, "ratio": round(fp.stat().st_size / info.bytes, 3),
             "packed_weights": info.packed_weights, "packed_parts": info.parts,
             "method": meta.get("method"), "bits": meta.get("bits")}
    if args.sizes:
        write_json(args.sizes, sizes)
    log.info("exported %s: %.1f kB (FP checkpoint %s: %.1f kB, %.2fx smaller)", args.out, info.bytes / 1e3,
             fp, sizes["fp_bytes"] / 1e3, sizes["ratio"])
