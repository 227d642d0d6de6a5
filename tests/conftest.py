import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")
needs_fmnist = pytest.mark.skipif(
    not (DEBIAN_FMNIST / "t10k-images-idx3-ubyte.gz").exists(),
    reason="Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)",
)


@pytest.fixture(scope="session")
def tiny_arch():
    from diffcomp.sections import UNetArch

    return UNetArch(block_out_channels=(8, 16, 16), norm_num_groups=4, attention_head_dim=16, dropout=0.0)


@pytest.fixture(scope="session")
def tiny_unet(tiny_arch):
    import torch

    from diffcomp.models.unet import build_unet

    torch.manual_seed(0)
    unet = build_unet(tiny_arch).eval()
    # Random, non-trivial weights everywhere (diffusers zero-initialises some output convs).
    with torch.no_grad():
        for p in unet.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.02)
    return unet


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory, tiny_unet):
    from diffcomp.models.pipeline import save_pipeline
    from diffcomp.models.unet import build_scheduler

    path = tmp_path_factory.mktemp("pipe") / "tiny-ddpm"
    save_pipeline(tiny_unet, build_scheduler(), path, provenance={"what": "test"})
    return path


def place_hand_inputs(wd: Path) -> None:
    """The files that configs without a published download have placed by hand (stand-ins of the
    right kind): config/sd-v1-4.yaml's prompts built from COCO's captions, its COCO images and its
    CLIP model folder's files; config/lsun-church-ldm8.yaml's LSUN-Church images."""
    from PIL import Image

    from diffcomp.metrics.clip_score import FILES

    (wd / "resources/coco").mkdir(parents=True, exist_ok=True)
    (wd / "resources/coco/prompts-val2014-seed0-n10000.txt").write_text("A cat on a sofa.\nA red bus.\n")
    for folder in ("resources/coco/val2014", "resources/lsun/church_outdoor_train"):
        (wd / folder).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), (200, 100, 50)).save(wd / folder / "img0.png")
    clip = wd / "resources/clip/clip-vit-large-patch14"
    clip.mkdir(parents=True, exist_ok=True)
    for f in FILES:
        (clip / f).write_text("{}")
