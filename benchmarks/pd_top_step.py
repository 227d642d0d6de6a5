"""How much of an N-step PD student's FID gap to its 2N-step teacher sits in its top step (t = 999):
samples of the student with its first step replaced by the teacher's two DDIM steps (the PD
target: the eps for which one DDIM step from t = 999 lands where the teacher's two steps do), and
of the student alone, from the same noises; FID of each, and their pixel MSE to the teacher's own
2N-step samples. CPU is enough (minutes for 5,000 samples).

    python benchmarks/pd_top_step.py STUDENT_FOLDER --steps 8 [--teacher resources/models/fmnist-ddpm]
        [--n 5000] [--reference results/reference/fmnist-classifier-test.npz] [--out pd_top_step.json]
        [--each]

``--each``: one such row for every student step k (the teacher's two steps in place of step k
alone), to see where the gap sits.

Prints and writes one JSON object.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from diffcomp.data.fmnist import to_model_range, to_uint8
from diffcomp.distill.targets import pd_target, stage_times
from diffcomp.metrics.fidelity import compare, make_extractor
from diffcomp.models.config import SamplerConfig
from diffcomp.models.parameterization import coefficients, kind_of, to_eps
from diffcomp.models.pipeline import load_pipeline
from diffcomp.models.sampler import generate, unet_fn


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("student")
    p.add_argument("--steps", type=int, required=True, help="the student's number of steps N")
    p.add_argument("--teacher", default="resources/models/fmnist-ddpm")
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--reference", default="results/reference/fmnist-classifier-test.npz")
    p.add_argument("--classifier", default="resources/models/fmnist-classifier")
    p.add_argument("--out", default="pd_top_step.json")
    p.add_argument("--each", action="store_true", help="also replace each other student step in turn")
    args = p.parse_args()
    n_steps = args.steps
    teacher, student = load_pipeline(args.teacher), load_pipeline(args.student)
    ac = teacher.alphas_cumprod
    t_eps = unet_fn(teacher.unet, None, teacher.prediction_type, ac)
    s_eps = unet_fn(student.unet, None, kind_of(student.prediction_type), ac)

    def times(k: int) -> tuple[int, int, int]:
        return tuple(int(v) for v in stage_times(len(ac), n_steps, torch.tensor([k])))

    def hybrid(k: int):
        """the student, except at its step k, where the teacher's two steps give the move"""
        t_k, t_mid, t_end = times(k)

        def fn(z, t):
            tt = torch.as_tensor(t).reshape(-1).expand(z.shape[0])
            if int(tt[0]) != t_k:
                return s_eps(z, t)
            full = lambda v: torch.full((z.shape[0],), v)  # noqa: E731
            x = pd_target(t_eps, z, full(t_k), full(t_mid), full(t_end), ac, clip_x0=True).double()
            a, s = coefficients(ac, full(t_k))
            return to_eps(x, z.double(), a, s, "x").to(z.dtype)

        return fn

    student_cfg = SamplerConfig(name="ddim", steps=n_steps, eta=0.0, skip="trailing", clip_x0=True)
    teacher_cfg = SamplerConfig(name="ddim", steps=2 * n_steps, eta=0.0, skip="trailing", clip_x0=True)
    shape = teacher.sample_shape
    runs = {"student": (s_eps, student_cfg), "student, top step by the teacher": (hybrid(n_steps), student_cfg)}
    if args.each:
        runs.update({f"student, step {k} (t = {times(k)[0]}) by the teacher": (hybrid(k), student_cfg)
                     for k in range(n_steps - 1, 0, -1)})
    runs["teacher"] = (t_eps, teacher_cfg)
    images = {k: [] for k in runs}
    with torch.no_grad():
        for start in range(0, args.n, args.batch):
            idx = list(range(start, min(start + args.batch, args.n)))
            for k, (fn, cfg) in runs.items():
                images[k].append(to_uint8(generate(fn, idx, shape, ac, cfg, 0, "cpu")))
            print(f"{idx[-1] + 1}/{args.n}", flush=True)
    images = {k: np.concatenate(v) for k, v in images.items()}
    ref = dict(np.load(args.reference))
    ext = make_extractor("fmnist-classifier", args.classifier)
    teacher_px = to_model_range(images["teacher"]).double()
    out = {"student": args.student, "steps": n_steps, "n": args.n, "top_step": list(times(n_steps)), "rows": {}}
    for k, im in images.items():
        row = {"fid": round(compare(im, ref, ext, "cpu")["fid"], 3)}
        if k != "teacher":
            row["pixel_mse_to_teacher"] = round(float((to_model_range(im).double() - teacher_px).pow(2).mean()), 5)
        out["rows"][k] = row
    print(json.dumps(out))
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
