"""Latent, class-conditional models: the autoencoder in the model folder, class labels, classifier-free
guidance, sampling through the decoder and calibration trajectories with their labels, on a tiny
random LDM (an autoencoder and a class-conditional UNet written with ``save_pretrained``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO

CLASSES = 10


def _randomise(module: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial weights everywhere (diffusers zero-initialises some output convs)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.02)
    return module.eval()


def tiny_autoencoder(kind: str = "kl"):
    from diffusers import AutoencoderKL, VQModel

    common = dict(in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
                  latent_channels=3, norm_num_groups=4, sample_size=32)
    torch.manual_seed(1)
    if kind == "kl":
        return _randomise(AutoencoderKL(**common, scaling_factor=0.5))
    return _randomise(VQModel(**common, num_vq_embeddings=16, vq_embed_dim=3, scaling_factor=1.0))


def tiny_class_unet():
    from diffusers import UNet2DModel

    torch.manual_seed(2)
    return _randomise(UNet2DModel(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(16, 32),
                                  layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                  up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8,
                                  attention_head_dim=8, num_class_embeds=CLASSES + 1))


CONTEXT_ARCH = dict(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(16, 32), layers_per_block=1,
                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), norm_num_groups=8, cross_attention_dim=16,
                    attention_head_dim=2)


def tiny_context_unet():
    """The LDM-4 ImageNet kind of denoiser: the class reaches the UNet as its cross-attention
    context (a one-token embedding), the table in encoder_hid_proj (bias zero)."""
    from diffusers import UNet2DConditionModel

    from diffcomp.models.conditioning import accept_labels

    torch.manual_seed(3)
    unet = _randomise(UNet2DConditionModel(**CONTEXT_ARCH, encoder_hid_dim=CLASSES + 1, encoder_hid_dim_type="text_proj"))
    with torch.no_grad():
        unet.encoder_hid_proj.weight.normal_(0, 1.0)
        unet.encoder_hid_proj.bias.zero_()
    return accept_labels(unet)


PROMPTS = ["the cat", "a dog sat", "the red hat"]


def tiny_text(prompts=PROMPTS):
    """A CLIP text encoder and tokenizer of 16 tokens over a 58-entry vocabulary (letters, the
    letters ending a word, two merges, the two special tokens), built offline."""
    import string

    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from diffcomp.models.pipeline import TextConditioning

    vocab = {c: i for i, c in enumerate(string.ascii_lowercase)}
    vocab.update({c + "</w>": 26 + i for i, c in enumerate(string.ascii_lowercase)})
    for tok in ("th", "the</w>", "<|startoftext|>", "<|endoftext|>"):
        vocab[tok] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[("t", "h"), ("th", "e</w>")], model_max_length=16)
    torch.manual_seed(4)
    encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                                           num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=16,
                                           bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
                                           pad_token_id=vocab["<|endoftext|>"])).eval()
    return TextConditioning(encoder, tokenizer, list(prompts))


def tiny_text_unet():
    """Stable Diffusion's kind of denoiser: the context is the prompt's CLIP embedding (16 wide)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(5)
    return _randomise(UNet2DConditionModel(**CONTEXT_ARCH))


def _save_ldm(tmp_path_factory, kind: str, denoiser: str = "class"):
    from diffcomp.models.pipeline import save_pipeline
    from diffcomp.models.unet import build_scheduler

    path = tmp_path_factory.mktemp("ldm") / f"tiny-ldm-{kind}-{denoiser}"
    unet = {"class": tiny_class_unet, "context": tiny_context_unet, "text": tiny_text_unet}[denoiser]()
    save_pipeline(unet, build_scheduler(), path, provenance={"what": "test"}, vae=tiny_autoencoder(kind),
                  text=tiny_text() if denoiser == "text" else None)
    return path


@pytest.fixture(scope="module", params=["kl", "vq"])
def tiny_ldm_dir(request, tmp_path_factory):
    """Both kinds of autoencoder: for what touches the autoencoder (loading, decoding)."""
    return _save_ldm(tmp_path_factory, request.param)


@pytest.fixture(scope="module")
def tiny_kl_ldm_dir(tmp_path_factory):
    """One kind: for what only the UNet sees (calibration, quantization)."""
    return _save_ldm(tmp_path_factory, "kl")


@pytest.fixture(scope="module")
def tiny_text_ldm_dir(tmp_path_factory):
    """A text-to-image latent model (Stable Diffusion's kind) conditioned on three prompts."""
    return _save_ldm(tmp_path_factory, "kl", "text")


def test_a_text_to_image_model_takes_prompt_ids_and_embeds_them_with_its_text_encoder(tiny_text_ldm_dir, tmp_path):
    """Prompt id i is the UNet fed the text encoder's output for prompt i (id K: the empty
    prompt), checked against the embedding computed by hand; the folder records and checks the
    text encoder's and the prompts' sha256, and a changed prompts.txt is refused by name."""
    from diffcomp.io import FileError
    from diffcomp.models.conditioning import num_classes
    from diffcomp.models.pipeline import load_pipeline
    from diffcomp.weights import pipeline_files

    pipe = load_pipeline(tiny_text_ldm_dir)
    assert num_classes(pipe.unet) == len(PROMPTS) and pipe.text.prompts == PROMPTS
    text = tiny_text()
    x, t, ids = torch.randn(2, 3, 16, 16), torch.tensor([900, 100]), torch.tensor([1, len(PROMPTS)])
    tokens = text.tokenizer(["a dog sat", ""], padding="max_length", max_length=16, return_tensors="pt").input_ids
    with torch.no_grad():
        by_hand = pipe.unet(x, t, text.encoder(tokens)[0]).sample
        assert torch.allclose(pipe.unet(x, t, ids).sample, by_hand, atol=1e-5)
        assert not torch.allclose(pipe.unet(x, t, torch.tensor([0, 2])).sample, by_hand)
    names = {str(Path(f).relative_to(tiny_text_ldm_dir)) for f in pipeline_files(tiny_text_ldm_dir)}
    assert {"text_encoder/model.safetensors", "tokenizer/tokenizer.json", "prompts.txt"} <= names
    prov = json.loads((tiny_text_ldm_dir / "provenance.json").read_text())
    assert len(prov["sha256_text_encoder"]) == len(prov["sha256_prompts"]) == 64
    bad = tmp_path / "bad"
    shutil.copytree(tiny_text_ldm_dir, bad)
    (bad / "prompts.txt").write_text("the cat\nanother prompt\na dog sat\n")
    with pytest.raises(FileError, match=str(bad / "prompts.txt")):
        load_pipeline(bad)


def test_a_hub_snapshot_of_a_text_to_image_model_is_converted_with_its_prompts(tmp_path):
    """A hub-layout snapshot (no checksum record, tokenizer as vocab.json and merges.txt) becomes
    a folder of this workflow's layout with the prompts given; without prompts it is refused."""
    from diffcomp.models.conditioning import num_classes
    from diffcomp.models.pipeline import convert_snapshot, load_pipeline

    snap = tmp_path / "snap"
    _save_ldm_to(snap, "text")
    (snap / "prompts.txt").unlink()
    (snap / "provenance.json").unlink()
    with pytest.raises(ValueError, match="text-to-image model: give the prompts"):
        convert_snapshot(snap, tmp_path / "out0", {"what": "test"})
    convert_snapshot(snap, tmp_path / "out", {"what": "test"}, prompts=["a hat", "the dog"])
    pipe = load_pipeline(tmp_path / "out")
    assert num_classes(pipe.unet) == 2 and pipe.text.prompts == ["a hat", "the dog"]


def _save_ldm_to(path, denoiser):
    from diffcomp.models.pipeline import save_pipeline
    from diffcomp.models.unet import build_scheduler

    unet = {"class": tiny_class_unet, "context": tiny_context_unet, "text": tiny_text_unet}[denoiser]()
    save_pipeline(unet, build_scheduler(), path, provenance={"what": "test"}, vae=tiny_autoencoder("kl"),
                  text=tiny_text() if denoiser == "text" else None)


@pytest.fixture(scope="module")
def tiny_context_ldm_dir(tmp_path_factory):
    """A latent model whose class is the UNet's cross-attention context (LDM-4 ImageNet's kind)."""
    return _save_ldm(tmp_path_factory, "kl", "context")


def test_a_class_context_unet_takes_labels_and_embeds_them_as_its_context(tiny_context_ldm_dir, tmp_path):
    """A label through the pre-hook is the UNet fed its embedding-table row as a one-token context
    (checked against the same UNet without the projection, given the row by hand); the loaded
    model takes labels; a nonzero projection bias or a text-conditioned UNet is refused by name."""
    from diffusers import UNet2DConditionModel

    from diffcomp.io import FileError
    from diffcomp.models.conditioning import conditioning_modules, num_classes
    from diffcomp.models.pipeline import load_pipeline

    unet = tiny_context_unet()
    assert num_classes(unet) == CLASSES and conditioning_modules(unet) == ("encoder_hid_proj",)
    plain = UNet2DConditionModel(**CONTEXT_ARCH).eval()
    sd = {k: v for k, v in unet.state_dict().items() if not k.startswith("encoder_hid_proj.")}
    assert not plain.load_state_dict(sd, strict=False).missing_keys
    x, t, labels = torch.randn(3, 3, 16, 16), torch.tensor([900, 500, 10]), torch.tensor([0, 4, CLASSES])
    table = unet.encoder_hid_proj.weight.T  # (classes + 1, context)
    with torch.no_grad():
        out = unet(x, t, labels).sample
        assert torch.allclose(out, plain(x, t, table[labels][:, None]).sample, atol=1e-5)
        assert not torch.allclose(out, unet(x, t, torch.tensor([1, 4, CLASSES])).sample)  # labels matter
        pipe = load_pipeline(tiny_context_ldm_dir)
        assert torch.allclose(pipe.unet(x, t, labels).sample, out, atol=1e-6)
    assert pipe.sample_shape == (3, 16, 16) and num_classes(pipe.unet) == CLASSES
    cfg = tiny_context_ldm_dir / "unet/config.json"
    for name, change, message in [("text", {"encoder_hid_dim_type": None}, "or on text, which needs text_encoder"),
                                  ("odd", {"_class_name": "VQModel"}, "is not a denoiser")]:
        bad = tmp_path / name
        shutil.copytree(tiny_context_ldm_dir, bad)
        (bad / "unet/config.json").write_text(json.dumps({**json.loads(cfg.read_text()), **change}))
        with pytest.raises(FileError, match=message):
            load_pipeline(bad)


def _verb(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO / "src"), os.environ.get("PYTHONPATH"))))}
    p = subprocess.run([sys.executable, "-m", "diffcomp.cli", *args], env=env, capture_output=True, text=True)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def test_a_latent_model_folder_round_trips_with_its_autoencoder_checked(tiny_ldm_dir, tmp_path):
    from diffcomp.io import FileError
    from diffcomp.models.conditioning import num_classes
    from diffcomp.models.pipeline import load_pipeline
    from diffcomp.weights import pipeline_files

    pipe = load_pipeline(tiny_ldm_dir)
    assert type(pipe.vae).__name__ in ("AutoencoderKL", "VQModel")
    assert pipe.sample_shape == (3, 16, 16) and num_classes(pipe.unet) == CLASSES
    assert json.loads((tiny_ldm_dir / "model_index.json").read_text())["vae"][1] == type(pipe.vae).__name__
    assert {"vae/diffusion_pytorch_model.safetensors", "vae/config.json"} <= {
        str(Path(f).relative_to(tiny_ldm_dir)) for f in pipeline_files(tiny_ldm_dir)}
    z = torch.randn(2, 3, 16, 16)
    img = pipe.decode(z)
    assert img.shape == (2, 1, 32, 32)
    # the decode divides by the autoencoder's scaling factor first
    assert torch.allclose(img, pipe.vae.decode(z / pipe.vae.config.scaling_factor).sample)
    # a replaced autoencoder is refused by name, before anything is loaded
    bad = tmp_path / "bad"
    shutil.copytree(tiny_ldm_dir, bad)
    w = bad / "vae/diffusion_pytorch_model.safetensors"
    w.write_bytes(w.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(FileError, match=str(w)):
        load_pipeline(bad)
    # an autoencoder of an unknown class is one clear message naming its config
    odd = tmp_path / "odd"
    shutil.copytree(tiny_ldm_dir, odd)
    cfg = odd / "vae/config.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "_class_name": "UNet2DModel"}))
    with pytest.raises(FileError, match="_class_name 'UNet2DModel' is not an autoencoder"):
        load_pipeline(odd)


def test_labels_are_balanced_and_depend_on_the_index_alone():
    from diffcomp.models.conditioning import labels_for

    lab = labels_for(range(1000), CLASSES)
    assert torch.equal(torch.bincount(lab), torch.full((CLASSES,), 100))
    assert torch.equal(labels_for(range(37, 55), CLASSES), lab[37:55])
    with pytest.raises(ValueError, match="classes must be at least 1"):
        labels_for([0], 0)


def test_classifier_free_guidance_combines_the_conditional_and_null_predictions():
    from diffcomp.models.conditioning import guided, num_classes
    from diffcomp.models.sampler import unet_fn

    unet = tiny_class_unet()
    fn = unet_fn(unet)
    x, t = torch.randn(3, 3, 16, 16), torch.tensor([900, 900, 900])
    labels = torch.tensor([0, 4, 9])
    with torch.no_grad():
        cond, null = fn(x, t, labels), fn(x, t, torch.full((3,), CLASSES))
        assert not torch.allclose(cond, null)  # the labels reach the UNet
        for scale in (0.0, 3.0):
            out = guided(fn, scale, null_label=CLASSES)(x, t, labels)
            assert torch.allclose(out, null + scale * (cond - null), atol=1e-5)
        assert guided(fn, 1.0, CLASSES) is fn  # scale 1: the conditional model, one forward
    assert num_classes(unet) == CLASSES and num_classes(torch.nn.Linear(1, 1)) is None


def test_sampling_a_latent_model_decodes_guided_latents_into_images(tiny_ldm_dir, tmp_path):
    """The sample verb on a latent class-conditional model: images of the autoencoder's size, the
    same image for the same index whatever the batch, and guidance changes them."""
    from diffcomp.models.conditioning import guided, labels_for
    from diffcomp.models.config import SamplerConfig
    from diffcomp.models.pipeline import load_pipeline
    from diffcomp.models.sampler import generate, unet_fn

    sampler = {"steps": 3, "skip": "uniform", "guidance": 2.0}
    common = ["sample", "--model", str(tiny_ldm_dir), "--sampler", json.dumps(sampler), "--device", "cpu",
              "--threads", "1"]
    _verb(*common, "--start", "0", "--end", "6", "--batch-size", "4", "--out", str(tmp_path / "a.npz"))
    _verb(*common, "--start", "3", "--end", "6", "--batch-size", "2", "--out", str(tmp_path / "b.npz"))
    a, b = np.load(tmp_path / "a.npz")["images"], np.load(tmp_path / "b.npz")["images"]
    assert a.shape == (6, 1, 32, 32) and a.dtype == np.uint8
    assert np.abs(a[3:].astype(int) - b.astype(int)).max() <= 1  # float rounding across batch sizes at most
    # the verb's images are the library's: DDIM on the latents with guidance, then the decoder
    pipe = load_pipeline(tiny_ldm_dir)
    fn = guided(unet_fn(pipe.unet), 2.0, CLASSES)
    ref = generate(fn, range(6), pipe.sample_shape, pipe.alphas_cumprod, SamplerConfig(**sampler), 0, "cpu",
                   labels=labels_for(range(6), CLASSES), decode=pipe.decode)
    from diffcomp.data.fmnist import to_uint8

    assert np.abs(to_uint8(ref).astype(int) - a.astype(int)).max() <= 1
    _verb(*common[:4], json.dumps({**sampler, "guidance": 1.0}), *common[5:], "--start", "0", "--end", "6",
          "--batch-size", "4", "--out", str(tmp_path / "c.npz"))
    assert not np.array_equal(np.load(tmp_path / "c.npz")["images"], a)


def test_a_pipeline_moves_every_network_it_runs(tiny_text_ldm_dir):
    """Pipeline.to puts the UNet, the autoencoder that decodes and the text encoder the prompt hook
    calls on one device (the sample verb once moved only the UNet: a VQ decode on the GPU failed)."""
    from diffcomp.models.pipeline import load_pipeline

    pipe = load_pipeline(tiny_text_ldm_dir)
    assert pipe.vae is not None and pipe.text is not None
    assert pipe.to("meta") is pipe
    for name, net in (("unet", pipe.unet), ("vae", pipe.vae), ("text encoder", pipe.text.encoder)):
        devices = {p.device.type for p in net.parameters()}
        assert devices == {"meta"}, (name, devices)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_sample_verb_decodes_a_latent_model_on_the_gpu(tiny_ldm_dir, tmp_path):
    """The sample verb on CUDA: the latents, the UNet and the autoencoder share the device, and the
    images equal the CPU's to rounding."""
    sampler = json.dumps({"steps": 3, "skip": "uniform", "guidance": 2.0})
    common = ["sample", "--model", str(tiny_ldm_dir), "--sampler", sampler, "--start", "0", "--end", "4"]
    _verb(*common, "--device", "cuda", "--out", str(tmp_path / "gpu.npz"))
    _verb(*common, "--device", "cpu", "--threads", "1", "--out", str(tmp_path / "cpu.npz"))
    g, c = np.load(tmp_path / "gpu.npz")["images"], np.load(tmp_path / "cpu.npz")["images"]
    assert g.shape == c.shape and np.abs(g.astype(int) - c.astype(int)).max() <= 2


def test_calibration_trajectories_of_a_conditional_model_keep_their_labels(tiny_kl_ldm_dir, tmp_path):
    tiny_ldm_dir = tiny_kl_ldm_dir
    from diffcomp.calib.trajectories import Trajectories

    out = tmp_path / "traj.safetensors"
    _verb("trajectories", "--model", str(tiny_ldm_dir), "--sampler", json.dumps({"steps": 3, "skip": "uniform",
                                                                                 "guidance": 2.0}),
          "--cfg", json.dumps({"n_trajectories": 12, "batch_size": 5, "seed": 0}), "--out", str(out), "--device", "cpu")
    traj = Trajectories.load(out)
    assert traj.xs.shape == (3, 12, 3, 16, 16)
    assert torch.equal(traj.labels, torch.arange(12) % CLASSES)
    assert traj.meta["sampler"]["guidance"] == 2.0
    with pytest.raises(ValueError, match="labels must be int64"):
        Trajectories(xs=traj.xs, ts=traj.ts, labels=torch.zeros(11, dtype=torch.long))
    # a method registered without `conditional` (its recipe would drop the labels) refuses them in one line
    import dataclasses

    from diffcomp.cli.quantize import check_conditional
    from diffcomp.methods import METHODS

    entry = dataclasses.replace(METHODS["linear"], conditional=False)
    with pytest.raises(SystemExit, match=f"{out}: these trajectories are of a class-conditional model"):
        check_conditional(entry, traj, out)
    check_conditional(METHODS["linear"], traj, out)


def test_calibration_inputs_carry_their_labels_and_the_null_twin_under_guidance():
    from diffcomp.calib.selectors import Calibration
    from diffcomp.calib.trajectories import Trajectories

    S, N = 4, 6
    xs = torch.arange(S * N, dtype=torch.float32).reshape(S, N, 1, 1, 1).expand(S, N, 1, 2, 2).clone()
    meta = {"sampler": {"guidance": 1.0}, "null_label": CLASSES}
    traj = Trajectories(xs=xs, ts=torch.tensor([750, 500, 250, 0]), meta=meta, labels=torch.arange(N) % 4 + 1)
    cal = Calibration.from_config({"selector": "uniform", "steps": 2, "per_step": 3}, "c")
    plain = cal.select(traj, seed=5)
    # every input's label is its trajectory's: the input's value names (step, trajectory)
    k = plain.xs[:, 0, 0, 0].long()
    assert torch.equal(plain.labels, traj.labels[k % N]) and torch.equal(plain.ts, traj.ts[k // N])
    assert all(len(b) == 3 for b in plain.batches(4))
    guided = cal.select(Trajectories(xs=xs, ts=traj.ts, labels=traj.labels, meta={**meta, "sampler": {"guidance": 3.0}}),
                        seed=5)
    assert len(guided) == 2 * len(plain)
    assert torch.equal(guided.xs[0::2], plain.xs) and torch.equal(guided.xs[1::2], plain.xs)
    assert torch.equal(guided.labels[0::2], plain.labels) and (guided.labels[1::2] == CLASSES).all()
    unlabelled = cal.select(Trajectories(xs=xs, ts=traj.ts), seed=5)
    assert unlabelled.labels is None and torch.equal(unlabelled.xs, plain.xs)
    with pytest.raises(ValueError, match="null label"):
        cal.select(Trajectories(xs=xs, ts=traj.ts, labels=traj.labels, meta={"sampler": {"guidance": 3.0}}))


QD_PARAMS = {"calibration": {"selector": "uniform", "steps": 3, "per_step": 8}, "iters_w": 2, "iters_a": 2,
             "batch_size": 8, "a_init_samples": 8}


@pytest.mark.parametrize("method, params, denoiser", [
    ("linear", {"calibration": {"selector": "uniform", "steps": 3, "per_step": 8}, "batch_size": 8}, "class"),
    ("qdiffusion", QD_PARAMS, "class"),
    ("qdiffusion", QD_PARAMS, "context"),
    ("mpqdm", {"epochs": 1, "batch_size": 4, "init_samples": 4, "lora_rank": 4, "omq_samples": 8}, "context"),
    ("qdiffusion", QD_PARAMS, "text"),
])
def test_a_guided_latent_model_is_quantized_and_sampled(tiny_kl_ldm_dir, tiny_context_ldm_dir, tiny_text_ldm_dir,
                                                        tmp_path, method, params, denoiser):
    """Calibration of a class-conditional model through the verbs: trajectories of guided sampling,
    a PTQ method on inputs with their labels and null twins, then guided sampling of the quantized
    UNet decoded through the FP autoencoder. Both kinds of class conditioning: the class embedding
    added to the timestep's, and the class as cross-attention context (whose embedding table stays
    in full precision); and a text-to-image model (prompts through its text encoder) sampled with
    PLMS on the latent-diffusion grid, as Stable Diffusion is."""
    tiny_ldm_dir = {"class": tiny_kl_ldm_dir, "context": tiny_context_ldm_dir, "text": tiny_text_ldm_dir}[denoiser]
    plms = denoiser == "text"
    sampler = json.dumps({"name": "plms" if plms else "ddim", "steps": 3, "skip": "ldm" if plms else "uniform",
                          "guidance": 2.0})
    traj = tmp_path / "traj.safetensors"
    _verb("trajectories", "--model", str(tiny_ldm_dir), "--sampler", sampler,
          "--cfg", json.dumps({"n_trajectories": 8, "batch_size": 8, "seed": 0}), "--out", str(traj), "--device", "cpu")
    q = tmp_path / "q.safetensors"
    _verb("quantize", "--model", str(tiny_ldm_dir), "--trajectories", str(traj), "--method", method, "--bits", "w4a8",
          "--params", json.dumps(params), "--out", str(q), "--device", "cpu", "--threads", "1")
    common = ["sample", "--model", str(tiny_ldm_dir), "--sampler", sampler, "--start", "0", "--end", "4",
              "--device", "cpu", "--threads", "1"]
    if denoiser == "context":
        from diffcomp.models.pipeline import load_pipeline
        from diffcomp.quant.wrap import load_quantized

        qm = load_quantized(load_pipeline(tiny_ldm_dir).unet, q)
        assert type(qm.encoder_hid_proj) is torch.nn.Linear  # the conditioning stage is not quantized
        assert type(qm.down_blocks[1].attentions[0].transformer_blocks[0].attn2.to_k).__name__ == "QuantLayer"
    _verb(*common, "--quantized", str(q), "--out", str(tmp_path / "q.npz"))
    _verb(*common, "--out", str(tmp_path / "fp.npz"))
    qi, fi = np.load(tmp_path / "q.npz")["images"], np.load(tmp_path / "fp.npz")["images"]
    assert qi.shape == fi.shape == (4, 1, 32, 32)
    assert not np.array_equal(qi, fi)  # the quantized UNet is what sampled
    # the per-timestep diagnostics and both corrections take the labelled inputs too
    _verb("diagnose", "--model", str(tiny_ldm_dir), "--quantized", str(q), "--heldout", str(traj), "--samples",
          str(tmp_path / "q.npz"), "--fp-samples", str(tmp_path / "fp.npz"), "--variant", method, "--out",
          str(tmp_path / "d.json"), "--device", "cpu")
    diag = json.loads((tmp_path / "d.json").read_text())
    steps = [667, 334, 1] if plms else [666, 333, 0]
    assert [d["t"] for d in diag["per_step"]] == steps and all(d["rel_err"] > 0 for d in diag["per_step"])
    _verb("correct", "--model", str(tiny_ldm_dir), "--quantized", str(q), "--trajectories", str(traj),
          "--bias-correction", "--eps-correction", "channel", "--out", str(tmp_path / "c.safetensors"), "--device", "cpu")
    _verb(*common, "--quantized", str(tmp_path / "c.safetensors"), "--out", str(tmp_path / "c.npz"))
    assert not np.array_equal(np.load(tmp_path / "c.npz")["images"], qi)
