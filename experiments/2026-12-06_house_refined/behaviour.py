"""The numbers issue 24's refactoring must keep, written as JSON: the fixed small job (metrics, per-defect numbers,
thresholds of its final checkpoint), the authors' checkpoint parity (their files loaded and scored against the
authors' procedure on the same weights) and the ONNX parity (a tiny fitted model and an authors' file exported and
scored by onnxruntime). Run on the code before the refactoring and after it:

    OMP_NUM_THREADS=1 .venv/bin/python experiments/2026-12-06_house_refined/behaviour.py before.json
    OMP_NUM_THREADS=1 .venv/bin/python experiments/2026-12-06_house_refined/behaviour.py after.json
    .venv/bin/python experiments/2026-12-06_house_refined/compare.py before.json after.json
"""

import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path[:0] = [str(REPO / "tests")]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402

import fod_lightning  # noqa: E402
from fod_lightning.bench.baseline import score as authors_score  # noqa: E402
from fod_lightning.export import export  # noqa: E402
from fod_lightning.models.backbone import FeatureExtractor  # noqa: E402
from fod_lightning.run import CONFIG_DIR, run  # noqa: E402
from helpers.authors_files import SIZE, authors_like_fod, save_authors_files  # noqa: E402
from helpers.configs import TINY, TINY_TEXTURES, compose_config  # noqa: E402
from integration.test_fixed_job import FIXED  # noqa: E402

torch.set_num_threads(1)


def final_thresholds(path: Path) -> dict:
    model = fod_lightning.load(path)
    return {k: model.thresholds.calibrated[k] for k in ("image", "pixel", "num_images")}


def fixed_job(tmp: Path) -> dict:
    category = run(compose_config(tmp, FIXED))["categories"]["brick"]
    record = {k: category[k] for k in ("image_auroc", "pixel_auroc", "pixel_aupro", "image_f1_max", "pixel_f1_max",
                                       "num_images", "val", "best", "defects")}  # fmt: skip
    record["thresholds"] = final_thresholds(tmp / "out/brick/checkpoints/last.ckpt")
    return record


def authors_parity(tmp: Path) -> dict:
    """Scores of the authors' files loaded by fod_lightning against the authors' procedure on the same weights."""
    backbone = FeatureExtractor("tf_efficientnet_lite0", weights="efficientnet_lite0_package")
    original = authors_like_fod(backbone)
    ckpt = save_authors_files(original, tmp)
    model = fod_lightning.load_model(ckpt, backbone=lambda: backbone)
    torch.manual_seed(5)
    images = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        scores, maps = model.net.score_images(images)
    theirs = [authors_score(original, images[i : i + 1]) for i in range(2)]
    their_maps = np.concatenate([m for m, _ in theirs])
    their_scores = np.concatenate([s for _, s in theirs])
    return {
        "image_scores": [float(s) for s in scores],
        "map_sum": float(maps.double().sum()),
        "relative_error_scores": float(np.abs(scores.numpy() - their_scores).max() / np.abs(their_scores).max()),
        "relative_error_maps": float(np.abs(maps.numpy() - their_maps).max() / np.abs(their_maps).max()),
    }


def export_parity(ckpt: Path, output: Path, *overrides: str) -> dict:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("export", overrides=[f"ckpt_path={ckpt}", f"output={output}", *overrides])
    return export(cfg)["parity"]["relative_error"]


def main(out: str) -> None:
    tmp = Path(tempfile.mkdtemp())
    record = {"fixed_job": fixed_job(tmp / "fixed")}
    (tmp / "authors").mkdir()
    record["authors_parity"] = authors_parity(tmp / "authors")
    run(compose_config(tmp / "tiny", TINY_TEXTURES + TINY + ["data.category=brick"]))
    tiny = tmp / "tiny/out/brick/checkpoints/last.ckpt"
    model = fod_lightning.load(tiny)
    images = model.contract.random_images(3, seed=10)
    with torch.no_grad():
        scores, maps = model.net.score_images(images)
    record["tiny_model"] = {"image_scores": [float(s) for s in scores], "map_sum": float(maps.double().sum()),
                            "thresholds": final_thresholds(tiny)}  # fmt: skip
    record["onnx_parity_tiny"] = export_parity(tiny, tmp / "tiny.onnx")
    authors_ckpt = tmp / "authors" / "bottle-pix.pth"
    record["onnx_parity_authors"] = export_parity(authors_ckpt, tmp / "authors.onnx",
                                                  "model/net/backbone=tf_efficientnet_lite0")  # fmt: skip
    Path(out).write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
