"""EfficientDM: LoRA quantization-aware training with per-timestep activation quantizers (TALSQ),
distilled from the FP model along its own sampling trajectories (``quant.lora_qat``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..quant.lora_qat import LoRAQATParams
from . import quant_method


@dataclass(frozen=True)
class EfficientDMParams(LoRAQATParams):
    """EfficientDM (He et al., ICLR 2024): the parameters and defaults of ``LoRAQATParams``, which
    are EfficientDM's released settings (see there)."""


@quant_method("efficientdm", label="EfficientDM", params=EfficientDMParams,
              contract={"epochs": 1, "batch_size": 4, "init_samples": 4, "lora_rank": 4, "w_init": "max",
                        "a_init": "max"}, conditional=True)
def recipe(unet, traj, bits, params: EfficientDMParams, device: str = "cpu", state_dir=None):
    from ..quant.lora_qat import init_ranges, spec_for, train
    from ..quant.wrap import quantize_model

    fp = unet.to(device).eval()
    spec = spec_for(bits, traj.ts.tolist(), params)
    model = quantize_model(fp, spec).to(device)
    init_ranges(model, traj, params, device)
    stats = train(model, fp, traj, params, device, state_dir=state_dir)
    return model.eval(), spec, {"qat": stats}
