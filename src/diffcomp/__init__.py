"""diffcomp: reproduce diffusion-model compression papers in one Snakemake DAG."""

__version__ = "0.1.0"


def load_quantized(path, device="cpu"):
    """The quantized ``UNet2DModel`` of an export (``diffcomp export``), ready for a diffusers
    pipeline::

        unet = diffcomp.load_quantized("results/export/linear-w4a8.safetensors")
        pipe = diffusers.DDIMPipeline(unet, scheduler)

    Imported by name on call: the package root is part of every rule's code hash, which would
    otherwise cover the quantization core (see ``diffcomp.hashing``).
    """
    from importlib import import_module

    return import_module("diffcomp.quant.export").load_export(path, device=device)
