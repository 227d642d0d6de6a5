"""Nothing silently wrong with the inputs: models are checked against their recorded sha256, no file
is unpickled (a planted payload never runs), and a damaged intermediate file is one line that
names it and the remedy."""

import argparse
import copy
import json
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO
from diffcomp.cli import main
from diffcomp.io import FileError, load_npz, read_json
from diffcomp.models.pipeline import convert_snapshot, load_pipeline, save_pipeline
from diffcomp.provenance import sha256_file
from diffcomp.weights import CLASSIFIER, PIPELINE, verify_classifier, verify_pipeline

SHIPPED_UNET = REPO / "resources/models/fmnist-ddpm"
SHIPPED_CLASSIFIER = REPO / "resources/models/fmnist-classifier"


def _flip(path: Path, n: int = 16, at: int = -4096) -> None:
    data = bytearray(path.read_bytes())
    data[at : at + n] = bytes(b ^ 0xA5 for b in data[at : at + n])
    path.write_bytes(bytes(data))


# ----------------------------------------------------------------------------- verified models


def test_shipped_models_match_their_recorded_sha256():
    assert verify_pipeline(SHIPPED_UNET) == SHIPPED_UNET / PIPELINE.weights
    assert verify_classifier(SHIPPED_CLASSIFIER) == SHIPPED_CLASSIFIER / CLASSIFIER.weights


def test_a_changed_diffusion_model_is_refused_before_it_is_loaded(tiny_unet, tmp_path):
    from diffcomp.models.unet import build_scheduler

    folder = tmp_path / "model"
    save_pipeline(tiny_unet, build_scheduler(), folder, provenance={"what": "test"})
    prov = json.loads((folder / "provenance.json").read_text())
    weights = folder / PIPELINE.weights
    assert prov["what"] == "test" and prov["sha256_unet"] == sha256_file(weights)
    load_pipeline(folder)
    _flip(weights)
    with pytest.raises(FileError) as e:
        load_pipeline(folder)
    assert str(e.value).startswith(f"{weights} does not match the sha256 recorded in {folder}/provenance.json (")
    assert str(e.value).endswith("the file is damaged or was replaced; restore it (git checkout, or delete it and rerun "
                                 "for a generated model)")
    (folder / "provenance.json").unlink()
    with pytest.raises(FileError, match=f"^{re.escape(str(folder))}/provenance.json is missing: every model folder"):
        load_pipeline(folder)


def test_a_changed_feature_network_is_refused(tmp_path):
    from diffcomp.metrics.classifier import FMNISTClassifier, load_classifier, save_classifier

    folder = tmp_path / "net"
    save_classifier(FMNISTClassifier(), folder, {"what": "test"})
    assert json.loads((folder / "provenance.json").read_text())["sha256"] == sha256_file(folder / "model.safetensors")
    load_classifier(folder)
    _flip(folder / "model.safetensors")
    with pytest.raises(FileError, match="model.safetensors does not match the sha256 recorded in"):
        load_classifier(folder)


def test_a_hub_snapshot_is_converted_into_a_verified_folder(tiny_pipeline_dir, tmp_path):
    """Hub repos such as google/ddpm-cifar10-32 come without a checksum record, in the flat layout:
    ``download`` converts them into the workflow's layout with the sha256 recorded."""
    flat = tmp_path / "snapshot"
    shutil.copytree(tiny_pipeline_dir / "unet", flat)
    shutil.copy(tiny_pipeline_dir / "scheduler" / "scheduler_config.json", flat / "scheduler_config.json")
    out = tmp_path / "converted"
    convert_snapshot(flat, out, {"hub_id": "owner/repo"})
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["hub_id"] == "owner/repo" and set(prov["source_sha256"]) >= {"config.json", "scheduler_config.json",
                                                                             "diffusion_pytorch_model.safetensors"}
    assert verify_pipeline(out) == out / PIPELINE.weights
    load_pipeline(out)


# ----------------------------------------------------------------------------- nothing is unpickled


class Payload:
    """Unpickling this creates the file ``marker``: code run from a data file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.fixture
def payload(tmp_path):
    marker = tmp_path / "PAYLOAD_RAN"
    live = pickle.dumps(Payload(marker))
    pickle.loads(live)  # the payload is live: plain unpickling runs it
    assert marker.exists()
    marker.unlink()
    return marker


def _plant(path: Path, marker: Path, how: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "pickle":
        path.write_bytes(pickle.dumps({"images": Payload(marker)}))
    elif how == "torch":
        torch.save({"step": Payload(marker), "images": Payload(marker)}, path)
    elif how == "npz":
        with open(path, "wb") as f:
            np.savez(f, images=np.array([Payload(marker)], dtype=object), indices=np.array([Payload(marker)], dtype=object))
    return path


def _sample_chunk_path(state_root: Path, model: Path, sampler: str) -> Path:
    from diffcomp.cli.sample import _state_key
    from diffcomp.models.config import SamplerConfig

    args = argparse.Namespace(model=str(model), quantized=None, start=0, end=2, seed=0, batch_size=2, precision="fp32",
                              compile=None)
    return state_root / _state_key(args, SamplerConfig(**json.loads(sampler)), "cpu") / "00000000-00000002.npz"


@pytest.mark.parametrize("how", ["pickle", "torch", "npz"])
def test_a_payload_planted_in_any_result_or_state_file_never_runs(payload, how, tiny_unet, tiny_pipeline_dir, tmp_path):
    """Every loadable result and resume-state file of the workflow, replaced by a pickle payload:
    each reader refuses it with one FileError naming the file, and the payload never runs."""
    from diffcomp.calib.trajectories import Trajectories
    from diffcomp.distill.methods.pd import PDParams
    from diffcomp.distill.stage import distill_stage
    from diffcomp.models.config import TrainConfig
    from diffcomp.models.train import train_ddpm
    from diffcomp.models.unet import build_scheduler
    from diffcomp.quant.wrap import load_quantized
    from diffcomp.report.tables import load_metrics

    r = tmp_path / "results"
    data = np.zeros((8, 1, 32, 32), np.uint8)
    sched = build_scheduler()
    model_copy = tmp_path / "model"
    shutil.copytree(tiny_pipeline_dir, model_copy)
    sampler = json.dumps({"steps": 2, "skip": "uniform"})
    readers = {
        r / "calib/trajectories.safetensors": lambda p: Trajectories.load(p),
        r / "quant/linear-w8a8.safetensors": lambda p: load_quantized(tiny_unet, p),
        r / "state/train/train_state.pt": lambda p: train_ddpm(copy.deepcopy(tiny_unet), sched, data,
                                                             TrainConfig(steps=2, batch_size=2), state_dir=p.parent),
        r / "state/distill/stage_state.pt": lambda p: distill_stage(copy.deepcopy(tiny_unet), data, sched.alphas_cumprod, 1,
                                                                    "pd", PDParams(iters=1, batch_size=2), state_dir=p.parent),
        r / "data/train.npz": lambda p: load_npz(p, {"images": "uint8"}),
        r / "samples/fp/shard-0.npz": lambda p: load_npz(p, {"images": "uint8", "indices": None}),
        r / "reference/net.npz": lambda p: load_npz(p, {"n": None, "fid_mu": None}),
        r / "metrics/fp.json": lambda p: load_metrics([p]),
        model_copy / "provenance.json": lambda p: load_pipeline(p.parent),
        _sample_chunk_path(r / "state/samples", tiny_pipeline_dir, sampler): lambda p: main(
            ["sample", "--model", str(tiny_pipeline_dir), "--sampler", sampler, "--start", "0", "--end", "2", "--batch-size", "2",
             "--out", str(tmp_path / "shard.npz"), "--state-dir", str(r / "state/samples"), "--device", "cpu"]),
    }
    for path, read in readers.items():
        _plant(path, payload, how)
        try:
            code = read(path)
        except FileError as e:
            assert str(e).startswith(str(path)) and "\n" not in str(e), str(e)
        else:
            assert code == 1, path  # a verb: the one-line error went to stderr
        assert not payload.exists(), f"reading {path} ran the payload"


def test_no_source_file_can_unpickle():
    """The package never calls torch.load without weights_only=True, pickle.load, or np.load with
    allow_pickle=True."""
    for path in (REPO / "src").rglob("*.py"):
        text = path.read_text()
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{path}: {call}"
        assert not re.search(r"pickle\.loads?\(|allow_pickle=True|weights_only=False", text), path


# ----------------------------------------------------------------------------- one line per damaged file


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _damaged_inputs(tmp_path, tiny_pipeline_dir, tiny_unet):
    """(verb argv, the damaged file) for every verb that reads an intermediate file."""
    from diffcomp.calib.trajectories import Trajectories
    from diffcomp.io import save_npz, write_json
    from diffcomp.quant.calibrate import init_activations, init_weights
    from diffcomp.quant.spec import QuantizerConfig, QuantSpec
    from diffcomp.quant.wrap import quantize_model, save_quantized

    r = tmp_path / "results"
    images = np.zeros((4, 1, 32, 32), np.uint8)
    for split in ("train", "test"):
        save_npz(r / f"data/{split}.npz", images=images, labels=np.zeros(4, np.int64))
    save_npz(r / "samples/fp/shard-0.npz", images=images, indices=np.arange(4))
    save_npz(r / "samples/fp/samples.npz", images=images, indices=np.arange(4))
    save_npz(r / "reference/net.npz", n=np.array(4), fid_mu=np.zeros(2), fid_sigma=np.eye(2), fid_features=np.zeros((4, 2)))
    write_json(r / "metrics/fp.json", {"variant": "fp", "metrics": {"fid": 1.0}, "protocol": {}})
    Trajectories(xs=torch.randn(2, 4, 1, 32, 32), ts=torch.tensor([500, 0])).save(r / "calib/trajectories.safetensors")
    spec = QuantSpec(QuantizerConfig(8, per_channel=True), QuantizerConfig(8))
    q = quantize_model(tiny_unet, spec)
    init_weights(q)
    init_activations(q, [(torch.randn(2, 1, 32, 32), torch.tensor([1, 500]))], lambda m, b: m(*b).sample)
    save_quantized(q, spec, r / "quant/linear-w8a8.safetensors")
    model, out = str(tiny_pipeline_dir), str(tmp_path / "out")
    clf = str(SHIPPED_CLASSIFIER)
    return [
        (["gather", "--shards", str(r / "samples/fp/shard-0.npz"), "--out", out], r / "samples/fp/shard-0.npz"),
        (["evaluate", "--samples", str(r / "samples/fp/samples.npz"), "--reference", str(r / "reference/net.npz"),
          "--weights", clf, "--variant", "fp", "--out", out, "--device", "cpu"], r / "samples/fp/samples.npz"),
        (["evaluate", "--samples", str(r / "samples/fp/samples.npz"), "--reference", str(r / "reference/net.npz"),
          "--weights", clf, "--variant", "fp", "--out", out, "--device", "cpu"], r / "reference/net.npz"),
        (["reference-stats", "--images", str(r / "data/test.npz"), "--weights", clf, "--out", out, "--device", "cpu"],
         r / "data/test.npz"),
        (["train", "--data", str(r / "data/train.npz"), "--out", out, "--device", "cpu"], r / "data/train.npz"),
        (["table1", "--metrics", str(r / "metrics/fp.json"), "--methods", "[]", "--bits", '["W8A8"]', "--out-stem", out],
         r / "metrics/fp.json"),
        (["quantize", "--model", model, "--trajectories", str(r / "calib/trajectories.safetensors"), "--method", "linear",
          "--bits", "w8a8", "--out", out, "--device", "cpu"], r / "calib/trajectories.safetensors"),
        (["sample", "--model", model, "--quantized", str(r / "quant/linear-w8a8.safetensors"), "--start", "0", "--end", "2",
          "--out", out, "--device", "cpu"], r / "quant/linear-w8a8.safetensors"),
        (["correct", "--model", model, "--quantized", str(r / "quant/linear-w8a8.safetensors"), "--trajectories",
          str(r / "calib/trajectories.safetensors"), "--bias-correction", "--out", out, "--device", "cpu"],
         r / "quant/linear-w8a8.safetensors"),
        (["correct", "--model", model, "--quantized", str(r / "quant/linear-w8a8.safetensors"), "--trajectories",
          str(r / "calib/trajectories.safetensors"), "--bias-correction", "--out", out, "--device", "cpu"],
         r / "calib/trajectories.safetensors"),
        *[(["diagnose", "--model", model, "--quantized", str(r / "quant/linear-w8a8.safetensors"), "--heldout",
            str(r / "calib/trajectories.safetensors"), "--samples", str(r / "samples/fp/samples.npz"), "--fp-samples",
            str(r / "samples/fp/shard-0.npz"), "--variant", "linear-w8a8", "--out", out, "--device", "cpu"], f)
          for f in (r / "quant/linear-w8a8.safetensors", r / "calib/trajectories.safetensors",
                    r / "samples/fp/samples.npz", r / "samples/fp/shard-0.npz")],
    ]


def test_every_verb_reports_a_truncated_input_in_one_line_naming_it_and_the_remedy(tmp_path, tiny_pipeline_dir,
                                                                                    tiny_unet, capsys):
    for argv, damaged in _damaged_inputs(tmp_path, tiny_pipeline_dir, tiny_unet):
        backup = damaged.read_bytes()
        _truncate(damaged)
        capsys.readouterr()
        assert main(argv) == 1, argv[0]
        err = capsys.readouterr().err
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"diffcomp {argv[0]}: {damaged} is damaged (") and last.endswith("): delete it and rerun"), err
        assert "Traceback" not in err
        damaged.write_bytes(backup)


def test_a_missing_input_names_the_file():
    with pytest.raises(FileError, match="^/nonexistent/metrics.json is missing: rerun the workflow to rebuild it$"):
        read_json("/nonexistent/metrics.json")
    with pytest.raises(FileError, match="^/nonexistent/shard-0.npz is missing"):
        load_npz("/nonexistent/shard-0.npz", {"images": "uint8"})


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_written_outputs_get_the_umasks_mode(tmp_path, umask, mode):
    """safetensors creates its files readable by the owner alone; outputs written through
    io.atomic_path get the mode the umask gives (a project's group can read the results)."""
    import os
    import subprocess
    import sys

    code = ("import os, torch; os.umask(%d)\n"
            "from diffcomp.calib.trajectories import Trajectories\n"
            "Trajectories(xs=torch.zeros(1, 2, 1, 4, 4), ts=torch.zeros(1, dtype=torch.long)).save(%r)\n"
            "from diffcomp.io import write_json; write_json(%r, {})") % (umask, str(tmp_path / "t.safetensors"),
                                                                        str(tmp_path / "m.json"))
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    for f in ("t.safetensors", "m.json"):
        assert (tmp_path / f).stat().st_mode & 0o777 == mode, f
