import json
import shutil

import pytest
import torch

from diffcomp.models.pipeline import load_pipeline


def test_pipeline_folder_round_trips(tiny_pipeline_dir, tiny_unet):
    pipe = load_pipeline(tiny_pipeline_dir)
    x, t = torch.randn(2, 1, 32, 32), torch.tensor([3, 700])
    with torch.no_grad():
        assert torch.allclose(pipe.unet(x, t).sample, tiny_unet(x, t).sample, atol=1e-6)
    assert pipe.num_train_timesteps == 1000
    assert pipe.alphas_cumprod.dtype == torch.float64
    assert json.loads((tiny_pipeline_dir / "provenance.json").read_text())["what"] == "test"


def test_single_model_repo_layout_loads(tiny_pipeline_dir, tmp_path):
    """Hub repos such as google/ddpm-cifar10-32 keep the UNet config and the scheduler config at the root."""
    from diffcomp.io import FileError
    from diffcomp.provenance import sha256_file

    flat = tmp_path / "flat"
    shutil.copytree(tiny_pipeline_dir / "unet", flat)
    shutil.copy(tiny_pipeline_dir / "scheduler" / "scheduler_config.json", flat / "scheduler_config.json")
    with pytest.raises(FileError, match="provenance.json is missing"):  # no checksum record: not loaded
        load_pipeline(flat)
    (flat / "provenance.json").write_text(json.dumps({"sha256_unet": sha256_file(flat / "diffusion_pytorch_model.safetensors")}))
    pipe = load_pipeline(flat)
    assert pipe.unet.config.in_channels == 1


def test_missing_folder_or_scheduler_is_a_clear_error(tiny_pipeline_dir, tmp_path):
    from diffcomp.io import FileError

    with pytest.raises(FileError, match="nope is missing: the model folder does not exist"):
        load_pipeline(tmp_path / "nope")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_pipeline_dir, broken)
    shutil.rmtree(broken / "scheduler")
    with pytest.raises(FileError, match="scheduler_config.json is missing"):
        load_pipeline(broken)


def test_download_goes_through_the_hub_client_and_fails_cleanly_offline(tmp_path, monkeypatch):
    from diffcomp.models.pipeline import download_pipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(Exception) as e:
        download_pipeline("google/ddpm-cifar10-32", tmp_path / "x")
    assert "offline" in str(e.value).lower() or "connect" in str(e.value).lower() or "cache" in str(e.value).lower()


def test_an_unknown_prediction_type_is_refused_naming_the_scheduler_config(tiny_pipeline_dir, tmp_path):
    from diffcomp.io import FileError

    folder = tmp_path / "m"
    shutil.copytree(tiny_pipeline_dir, folder)
    cfg = folder / "scheduler" / "scheduler_config.json"
    for name, ok in (("v_prediction", True), ("v-prediction", False)):
        cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "prediction_type": name}))
        if ok:
            assert load_pipeline(folder).prediction_type == name
        else:
            with pytest.raises(FileError, match=r"scheduler_config.json .*'v-prediction' is unknown.*v_prediction"):
                load_pipeline(folder)
