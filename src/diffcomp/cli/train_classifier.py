"""Train the Fashion-MNIST feature classifier used by the offline metrics."""

from __future__ import annotations

import logging
from pathlib import Path

from ..metrics.config import ClassifierTrainConfig
from ..io import atomic_path, load_npz
from ..provenance import provenance
from ._common import pick_device, section, set_threads

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--data-dir", required=True, help="folder with train.npz and test.npz")
    p.add_argument("--cfg", default=None, help="feature_net.train as JSON")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)


def run(args) -> None:
    from ..metrics.classifier import save_classifier, train_classifier

    set_threads(args.threads)
    cfg = section(ClassifierTrainConfig, args.cfg, "feature_net.train")
    d = Path(args.data_dir)
    tr, te = (load_npz(d / f"{split}.npz", {"images": "uint8", "labels": None}) for split in ("train", "test"))
    model, stats = train_classifier((tr["images"], tr["labels"]), (te["images"], te["labels"]), cfg, device=pick_device(args.device))
    with atomic_path(args.out, suffix="") as tmp:
        save_classifier(model, tmp, provenance(what="Fashion-MNIST feature classifier trained by `diffcomp train-classifier`",
                                               **stats))
    log.info("test accuracy %.4f -> %s", stats["test_accuracy"], args.out)
