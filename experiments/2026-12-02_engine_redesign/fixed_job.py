"""The fixed small job of tests/integration/test_fixed_job.py: its metrics, per-defect numbers and the calibrated
thresholds of last.ckpt, written as JSON. Runs on the code before the redesign (2d0677c) and after it.

    .venv/bin/python experiments/2026-12-02_engine_redesign/fixed_job.py after.json
"""

import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path[:0] = [str(REPO / "tests")]
try:  # after the redesign: the tests' helpers and the engine
    from fod_lightning.engine.job import run
    from helpers.configs import compose_config
except ImportError:  # 2d0677c: the flat tests folder and run.py
    from conftest import compose_config
    from fod_lightning.run import run
import torch  # noqa: E402

FIXED = ["data.category=brick", "data.n_train=10", "data.n_test_good=4", "data.n_test_per_defect=2",
         "data.crop_size=64", "data.image_size=64", "model.net.d_models=[16,32]", "model.net.depth=1",
         "model.net.n_heads=2", "trainer.max_epochs=2", "trainer.log_every_n_steps=1",
         "trainer.enable_progress_bar=false", "~callbacks.progress_bar", "trainer.accelerator=cpu",
         "callbacks.test_pictures.max_panels=1", "seed=3407"]  # fmt: skip

if __name__ == "__main__":
    tmp = Path(tempfile.mkdtemp())
    category = run(compose_config(tmp, FIXED))["categories"]["brick"]
    record = {k: category[k] for k in ("image_auroc", "pixel_auroc", "pixel_aupro", "image_f1_max", "pixel_f1_max",
                                       "num_images", "val", "best", "defects")}  # fmt: skip
    saved = torch.load(tmp / "out/brick/checkpoints/last.ckpt", weights_only=True)["fod"]["thresholds"]
    record["thresholds"] = {k: saved[k] for k in ("image", "pixel", "num_images")}
    Path(sys.argv[1]).write_text(json.dumps(record, indent=1) + "\n")
