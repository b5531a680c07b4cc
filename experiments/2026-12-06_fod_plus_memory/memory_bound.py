"""fod_plus's patch memory at MVTec size: validation metrics and scoring time against the memory's bound.

Validation only (``from_train``: held-out normal training images and synthetic-defect copies of them); the test split
is not read. The memory is built before training from the training images' features and only scoring reads it, so a
run fitted with every patch kept gives every bound (``model.net.memory_max_patches``) exactly: its full memory's greedy
k-center coreset, chosen as :meth:`PatchMemory.set` chooses it (the same patches in the same order, the same seeded
generator).

    python memory_bound.py RUN_DIR CATEGORY --bounds none,50000,20000,10000,5000 --out memory_bound.json
"""

import argparse
import json
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from omegaconf import OmegaConf

from fod_lightning.deploy.checkpoint import load
from fod_lightning.models.fod.memory import PatchMemory

MIB = 2**20


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run_dir")
    p.add_argument("category")
    p.add_argument("--bounds", default="none,50000,20000,10000,5000", help="memory_max_patches values (none: all)")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    run = Path(args.run_dir)
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    cfg.data.category = args.category
    datamodule = hydra.utils.instantiate(cfg.data)
    assert datamodule.val_protocol == "from_train", "validation only: the run must use data.val_protocol=from_train"
    model = load(run / args.category / "checkpoints" / "last.ckpt")
    full = model.net.memory
    assert full.ratio == 1.0 and full.max_patches is None and full.is_set, "fit the run with every patch kept"
    banks = full.banks
    rows = []
    for bound in (None if b == "none" else int(b) for b in args.bounds.split(",")):
        memory = PatchMemory(full.n_stages, 1.0, bound)
        start = time.perf_counter()
        memory.set([bank[:, :, None, None] for bank in banks])  # (M, C, 1, 1): the same rows, in order
        coreset_s = time.perf_counter() - start
        model.net.memory = memory
        trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False)
        start = time.perf_counter()
        metrics = trainer.validate(model, datamodule=datamodule, verbose=False)[0]
        seconds = time.perf_counter() - start
        images = len(datamodule.split("val"))
        row = {"max_patches": bound, "patches": [len(bank) for bank in memory.banks],
               "bank_mib": sum(bank.numel() * 4 for bank in memory.banks) / MIB,
               "coreset_s": coreset_s, "validation_s_per_image": seconds / images, "val_images": images,
               **{k: float(v) for k, v in metrics.items() if k.startswith("val/") and not k.endswith("_best")}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    Path(args.out).write_text(json.dumps({"run": str(run), "category": args.category, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
