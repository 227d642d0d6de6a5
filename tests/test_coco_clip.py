"""The Stable Diffusion protocol's inputs and metric: COCO captions as prompts (``data.coco``,
``diffcomp coco-prompts``) and the CLIP score (``metrics.clip_score``, ``diffcomp evaluate
--clip-model``), on tiny files built offline."""

from __future__ import annotations

import hashlib
import json
import string
from pathlib import Path

import numpy as np
import pytest
import torch

from diffcomp.cli import main
from diffcomp.data.coco import normalise, read_captions, shuffled_prompts
from diffcomp.models.pipeline import read_prompts

REPO = Path(__file__).resolve().parents[1]

ANNOTATIONS = [  # out of id order, with the whitespace captions have
    {"image_id": 9, "id": 30, "caption": "A dog\nruns on  the beach."},
    {"image_id": 7, "id": 10, "caption": "  A cat sleeps\ton a sofa. "},
    {"image_id": 9, "id": 50, "caption": "Two dogs play."},
    {"image_id": 8, "id": 20, "caption": "A red bus.\r\n"},
    {"image_id": 8, "id": 40, "caption": "A bus\u2028at a stop."},
]
BY_ID = ["A cat sleeps on a sofa.", "A red bus.", "A dog runs on the beach.", "A bus at a stop.", "Two dogs play."]


def write_captions(path: Path, annotations=ANNOTATIONS, **extra) -> Path:
    path.write_text(json.dumps({"images": [{"id": 7}, {"id": 8}, {"id": 9}], "annotations": annotations, **extra}))
    return path


def test_coco_prompts_are_the_seeded_shuffle_of_the_normalised_captions(tmp_path):
    """The verb writes n captions, each on one line, in the order of numpy's seeded permutation
    of the captions sorted by annotation id: the file's own order does not matter, the seed does."""
    captions = write_captions(tmp_path / "captions.json")
    sha = hashlib.sha256(captions.read_bytes()).hexdigest()
    out = tmp_path / "prompts.txt"
    assert main(["coco-prompts", "--captions", str(captions), "--sha256", sha, "--n", "4", "--seed", "3",
                 "--out", str(out)]) == 0
    expected = [BY_ID[i] for i in np.random.default_rng(3).permutation(5)[:4]]
    assert read_prompts(out) == expected
    assert out.read_text() == "\n".join(expected) + "\n"
    assert read_captions(captions) == BY_ID
    reordered = write_captions(tmp_path / "reordered.json", ANNOTATIONS[::-1])
    assert shuffled_prompts(read_captions(reordered), 4, 3) == expected
    assert shuffled_prompts(BY_ID, 4, 4) != expected
    assert sorted(shuffled_prompts(BY_ID, 5, 3)) == sorted(BY_ID)  # a permutation: no caption twice
    assert normalise(" a\n\n b\tc \x0b d\u2029e ") == "a b c d e"


@pytest.mark.parametrize("case, message", [
    ("no-annotations", "no 'annotations' entry"),
    ("not-list", "'annotations' is a dict, not a list"),
    ("not-string", "annotations[1] (id 10): 'caption' is list, not a string"),
    ("empty", "annotations[2] (id 50): 'caption' is empty"),
    ("no-id", "annotations[0] has no integer 'id'"),
    ("repeated", "annotations[4]: id 30 is repeated"),
    ("not-json", "not JSON"),
    ("too-many", "10 prompts asked for, but there are only 5 captions"),
    ("sha256", "differs from the expected"),
])
def test_a_malformed_captions_file_is_one_error_naming_it_and_nothing_is_written(tmp_path, capsys, case, message):
    path = tmp_path / "captions.json"
    anns = [dict(a) for a in ANNOTATIONS]
    n, sha = "3", []
    if case == "no-annotations":
        path.write_text(json.dumps({"images": []}))
    elif case == "not-list":
        path.write_text(json.dumps({"annotations": {"caption": "a"}}))
    elif case == "not-json":
        path.write_text('{"annotations": [')
    else:
        if case == "not-string":
            anns[1]["caption"] = ["A cat"]
        elif case == "empty":
            anns[2]["caption"] = " \n "
        elif case == "no-id":
            del anns[0]["id"]
        elif case == "repeated":
            anns[4]["id"] = 30
        elif case == "too-many":
            n = "10"
        elif case == "sha256":
            sha = ["--sha256", "0" * 64]
        write_captions(path, anns)
    out = tmp_path / "prompts.txt"
    assert main(["coco-prompts", "--captions", str(path), "--n", n, *sha, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and message in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".prompts.txt*"))


# ---- CLIP score


def tiny_tokenizer(max_length: int = 16):
    """A CLIP tokenizer over letters, end-of-word letters, two merges and the special tokens
    (tests/test_latent.py builds its text encoder's the same way), offline."""
    from transformers import CLIPTokenizer

    vocab = {c: i for i, c in enumerate(string.ascii_lowercase)}
    vocab.update({c + "</w>": 26 + i for i, c in enumerate(string.ascii_lowercase)})
    for tok in ("th", "the</w>", "<|startoftext|>", "<|endoftext|>"):
        vocab[tok] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[("t", "h"), ("th", "e</w>")], model_max_length=max_length), vocab


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    """A random CLIPModel (32 wide, 2 layers, 32 x 32 images in 8 x 8 patches, 16 text tokens),
    its PIL image processor (shortest side 32, crop 32) and tokenizer, saved with save_pretrained.
    Both towers' final norms get a shared offset, so image and text embeddings have positive
    cosines that still depend on the inputs (a random CLIP's cosines are near zero, often negative,
    and would all score 0)."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    tokenizer, vocab = tiny_tokenizer()
    torch.manual_seed(0)
    tower = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    text = {**tower, "vocab_size": len(vocab), "max_position_embeddings": 16, "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": vocab["<|endoftext|>"], "pad_token_id": vocab["<|endoftext|>"]}
    cfg = CLIPConfig(text_config=text, vision_config={**tower, "image_size": 32, "patch_size": 8}, projection_dim=16)
    model = CLIPModel(cfg).eval()
    with torch.no_grad():
        model.text_model.final_layer_norm.bias[0] = 2.0
        model.vision_model.post_layernorm.bias[0] = 2.0
        model.text_projection.weight[:, 0] = 1.0
        model.visual_projection.weight[:, 0] = 1.0
    folder = tmp_path_factory.mktemp("clip") / "tiny-clip"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


PROMPTS = ["the cat", "a dog sat on the mat", "the red hat", "a bus", "the the the"]


def images(n: int, h: int = 40, w: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, h, w), dtype=np.uint8)


def test_the_clip_score_is_100_times_the_positive_cosine_of_the_models_embeddings(tiny_clip_dir):
    """Per image, in batches of 2: 100 * max(cos, 0) of get_image_features and get_text_features
    on the preprocessed images and the truncated tokens, computed here by hand."""
    from diffcomp.metrics.clip_score import clip_scores, load_clip, preprocess, summary

    clip = load_clip(tiny_clip_dir)
    x = images(5)
    scores = clip_scores(x, PROMPTS, clip, batch_size=2)
    with torch.no_grad():
        img = clip.model.get_image_features(pixel_values=preprocess(x, clip.processor)).pooler_output.numpy()
        tok = clip.tokenizer(PROMPTS, padding=True, truncation=True, max_length=16, return_tensors="pt")
        txt = clip.model.get_text_features(input_ids=tok.input_ids, attention_mask=tok.attention_mask).pooler_output.numpy()
    cos = (img * txt).sum(1) / np.linalg.norm(img, axis=1) / np.linalg.norm(txt, axis=1)
    assert scores.shape == (5,) and np.allclose(scores, 100 * np.maximum(cos, 0), atol=1e-4)
    assert (scores >= 0).all() and (scores <= 100).all()
    assert (cos < 0).any() and (cos > 0).sum() >= 3  # both sides of the max are exercised
    s = summary(scores)
    assert s == {"clip_score": pytest.approx(scores.mean()), "clip_score_std": pytest.approx(scores.std())}
    assert np.allclose(clip_scores(x, PROMPTS, clip, batch_size=64), scores, atol=1e-5)  # batching changes nothing


def test_a_negative_cosine_scores_zero_and_another_prompt_changes_the_score(tiny_clip_dir):
    from diffcomp.metrics.clip_score import clip_scores, load_clip

    clip = load_clip(tiny_clip_dir)
    x = images(1)
    base = clip_scores(x, ["the cat"], clip)
    assert base[0] > 0 and clip_scores(x, ["a bus"], clip)[0] != pytest.approx(base[0], abs=1e-3)
    with torch.no_grad():
        clip.model.visual_projection.weight.neg_()  # every cosine changes sign
    assert clip_scores(np.concatenate([x, images(3, seed=1)]), ["the cat", "a", "b", "the dog"], clip).tolist() == [0] * 4


def test_images_are_preprocessed_as_clips_pil_processor_and_prompts_truncated(tiny_clip_dir):
    """Shortest side to 32 (bicubic on the uint8 image), centre crop 32, CLIP's mean and std; a
    prompt longer than the text model's 16 positions is cut, not refused."""
    from PIL import Image

    from diffcomp.metrics.clip_score import clip_scores, load_clip, preprocess, tokenize

    clip = load_clip(tiny_clip_dir)
    x = images(2, 40, 50)
    mean, std = np.array([0.48145466, 0.4578275, 0.40821073]), np.array([0.26862954, 0.26130258, 0.27577711])
    expected = []
    for im in x:
        small = np.asarray(Image.fromarray(im.transpose(1, 2, 0)).resize((40, 32), Image.Resampling.BICUBIC))
        crop = small[:, 4:36].astype(np.float64) / 255
        expected.append(((crop - mean) / std).transpose(2, 0, 1))
    got = preprocess(x, clip.processor)
    assert got.dtype == torch.float32 and got.shape == (2, 3, 32, 32)
    assert np.allclose(got.numpy(), np.stack(expected), atol=1e-5)
    long = "the cat sat on the mat with the red hat " * 4
    assert clip.max_length == 16 and tokenize([long, "a"], clip)["input_ids"].shape == (2, 16)
    assert 0 < clip_scores(x[:1], [long], clip)[0] <= 100
    with pytest.raises(ValueError, match="uint8"):
        preprocess(x.astype(np.float32), clip.processor)


def test_images_and_prompts_must_pair_up_and_the_folder_must_be_complete(tiny_clip_dir, tmp_path):
    import shutil

    from diffcomp.io import FileError
    from diffcomp.metrics.clip_score import clip_scores, load_clip

    clip = load_clip(tiny_clip_dir)
    with pytest.raises(ValueError, match="3 images but 2 prompts"):
        clip_scores(images(3), ["a", "b"], clip)
    partial = tmp_path / "partial"
    shutil.copytree(tiny_clip_dir, partial)
    (partial / "preprocessor_config.json").unlink()
    with pytest.raises(FileError, match="preprocessor_config.json is missing"):
        load_clip(partial)


def test_each_image_is_scored_with_the_prompt_the_sampler_gave_its_index():
    """Image i had prompt i mod K (``labels_for``, what the sample verb conditions on)."""
    from diffcomp.metrics.clip_score import prompts_of
    from diffcomp.models.conditioning import labels_for

    assert prompts_of([0, 1, 2, 3, 7], ["a", "b", "c"]) == ["a", "b", "c", "a", "b"]
    assert labels_for([0, 1, 2, 3, 7], 3).tolist() == [0, 1, 2, 0, 1]


def text_model_folder(folder: Path, prompts: list[str]) -> Path:
    """The part of a text-to-image model folder the CLIP score reads: prompts.txt and its
    recorded sha256."""
    folder.mkdir(parents=True)
    (folder / "prompts.txt").write_text("\n".join(prompts) + "\n")
    sha = hashlib.sha256((folder / "prompts.txt").read_bytes()).hexdigest()
    (folder / "provenance.json").write_text(json.dumps({"sha256_prompts": sha}))
    return folder


def test_evaluate_reports_the_clip_score_of_a_shard_with_the_models_prompts(tiny_clip_dir, tmp_path):
    """--clip-model adds clip_score and its std to the metrics (the mean over images of the
    shard's indices 3..6 with prompts 3 mod 2..); without it the metrics are the FID ones alone;
    a prompts file that differs from its record is refused by name."""
    from diffcomp.metrics.clip_score import clip_scores, load_clip

    clf = REPO / "resources/models/fmnist-classifier"
    x = images(4, 32, 32, seed=5)
    np.savez(tmp_path / "samples.npz", images=x, indices=np.arange(3, 7))
    np.savez(tmp_path / "real.npz", images=images(8, 32, 32, seed=6))
    assert main(["reference-stats", "--images", str(tmp_path / "real.npz"), "--weights", str(clf),
                 "--out", str(tmp_path / "ref.npz"), "--device", "cpu"]) == 0
    model = text_model_folder(tmp_path / "sd", ["the cat", "a dog"])
    common = ["evaluate", "--samples", str(tmp_path / "samples.npz"), "--reference", str(tmp_path / "ref.npz"),
              "--weights", str(clf), "--variant", "fp", "--device", "cpu"]
    assert main([*common, "--clip-model", str(tiny_clip_dir), "--model", str(model), "--out", str(tmp_path / "m.json")]) == 0
    rec = json.loads((tmp_path / "m.json").read_text())
    expected = clip_scores(x, ["a dog", "the cat", "a dog", "the cat"], load_clip(tiny_clip_dir))
    assert rec["metrics"]["clip_score"] == pytest.approx(expected.mean(), abs=1e-4)
    assert rec["metrics"]["clip_score_std"] == pytest.approx(expected.std(), abs=1e-4)
    assert rec["protocol"]["clip_score"]["weights_sha256"] == hashlib.sha256(
        (tiny_clip_dir / "model.safetensors").read_bytes()).hexdigest()
    assert rec["protocol"]["clip_score"]["n_prompts"] == 2
    assert main([*common, "--out", str(tmp_path / "plain.json")]) == 0
    plain = json.loads((tmp_path / "plain.json").read_text())
    assert "clip_score" not in plain["metrics"] and "clip_score" not in plain["protocol"]
    assert plain["metrics"]["fid"] == pytest.approx(rec["metrics"]["fid"])
    (model / "prompts.txt").write_text("the cat\na bus\n")
    assert main([*common, "--clip-model", str(tiny_clip_dir), "--model", str(model), "--out", str(tmp_path / "x.json")]) == 1
    assert not (tmp_path / "x.json").exists()
