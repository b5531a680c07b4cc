"""The unified setting on two tiny categories: one model, one checkpoint, both categories tested, scores independent of
any category label, predict and export on its checkpoint, and the refusals."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import fod_lightning
from fod_lightning.errors import ConfigError
from fod_lightning.run import run
from helpers.configs import TINY, TINY_RUN, TINY_TEXTURES, compose_config
from helpers.datasets import write_btad, write_mvtec, write_mvtec3d, write_visa

TWO = ["data.category=[brick,grass]", "setting=unified"]
MODELS = {"fod": TINY, "patchcore": [*TINY_RUN, "model=patchcore"], "padim": [*TINY_RUN, "model=padim"]}


def unified(tmp_path, model: str = "fod", *overrides: str) -> dict:
    return run(compose_config(tmp_path, [*TINY_TEXTURES, *MODELS[model], *TWO, *overrides]))


@pytest.mark.parametrize("model", sorted(MODELS))
def test_one_model_one_checkpoint_every_category_tested(tmp_path, model):
    results = unified(tmp_path, model)
    assert results["setting"] == "unified" and set(results["categories"]) == {"brick", "grass"}
    for record in results["categories"].values():
        assert 0 <= record["image_auroc"] <= 1 and 0 <= record["mad"] <= 1 and record["num_images"] == 5
    checkpoints = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*.ckpt"))
    assert [str(p) for p in checkpoints] == ["unified/checkpoints/last.ckpt"]  # exactly one model
    for category in ("brick", "grass"):
        assert (tmp_path / "out" / category / "scores.csv").is_file()
        assert any((tmp_path / "out" / category / "pictures").glob("*.png"))
    model_ = fod_lightning.load(tmp_path / "out/unified/checkpoints/last.ckpt")
    assert model_.fitted_on["setting"] == "unified" and model_.fitted_on["categories"] == ["brick", "grass"]
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["setting"] == "unified" and "unified setting" in (tmp_path / "out" / "summary.md").read_text()


def test_scores_do_not_depend_on_category_labels(tmp_path):
    """The one model scores an image the same whether it comes with its category's test split, shuffled among the other
    category's images, or with no category at all: nothing of the category reaches it."""
    unified(tmp_path)
    model = fod_lightning.load(tmp_path / "out/unified/checkpoints/last.ckpt")
    by_category = {}
    for category in ("brick", "grass"):
        with (tmp_path / "out" / category / "scores.csv").open() as f:
            rows = [line.rstrip("\n").split(",") for line in f][1:]
        by_category |= {row[0]: float(row[2]) for row in rows}
    paths = sorted(by_category)
    order = np.random.default_rng(0).permutation(len(paths))
    images = torch.stack([model.contract.preprocess(paths[i]) for i in order])
    with torch.no_grad():
        scores = model.net.score_images(images)[0]
    for i, score in zip(order, scores):
        assert float(score) == pytest.approx(by_category[paths[i]], rel=1e-5)


def test_predict_and_export_take_the_unified_checkpoint_without_a_category(tmp_path):
    unified(tmp_path)
    ckpt = tmp_path / "out/unified/checkpoints/last.ckpt"
    (grass,) = tmp_path.glob("data/*/grass/test")
    env = {"OMP_NUM_THREADS": "1", "PATH": ""}
    pred = subprocess.run([sys.executable, "-m", "fod_lightning.predict", f"ckpt_path={ckpt}", f"input={grass}",
                           f"output_dir={tmp_path / 'pred'}"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert pred.returncode == 0, pred.stderr[-2000:]
    other = subprocess.run([sys.executable, "-m", "fod_lightning.predict", f"ckpt_path={ckpt}", f"input={grass}",
                            f"output_dir={tmp_path / 'pred2'}", "category=gravel"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert other.returncode == 2 and other.stderr.strip().startswith(f"error: checkpoint {ckpt} is one model for the "
                                                                     "categories brick, grass (the unified setting), "
                                                                     "not trained on gravel")  # fmt: skip
    output = tmp_path / "unified.onnx"
    exp = subprocess.run([sys.executable, "-m", "fod_lightning.export", f"ckpt_path={ckpt}", f"output={output}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert exp.returncode == 0, exp.stderr[-2000:]
    doc = json.loads(output.with_suffix(".json").read_text())
    assert max(doc["parity"]["relative_error"].values()) < 1e-4 and doc["fitted_on"]["setting"] == "unified"


def test_the_unified_settings_refusals(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"setting=unified trains one model for several categories, but "
        r"data.category gives brick alone: set data.category=all or a list",
    ):
        run(compose_config(tmp_path / "a", [*TINY_TEXTURES, *TINY, "data.category=brick", "setting=unified"]))
    with pytest.raises(ConfigError, match=r"model.net.reference_mode=mean is one mean reference per category"):
        unified(tmp_path / "b", "fod", "model.net.reference_mode=mean")
    run(compose_config(tmp_path / "c", [*TINY_TEXTURES, *TINY, "data.category=brick"]))
    separate = tmp_path / "c/out/brick/checkpoints/last.ckpt"
    with pytest.raises(
        ConfigError,
        match=r"is the model of one category \(brick, the separate setting\), not a "
        r"unified one: evaluate it with setting=separate data.category=brick",
    ):
        unified(tmp_path / "d", "fod", "train=false", f"ckpt_path={separate}")


UNIFIED_LAYOUTS = {  # benchmark -> (writer of its tiny layout, its two categories)
    "mvtec": (lambda root: [write_mvtec(root, c) for c in ("bottle", "cable")], "[bottle,cable]"),
    "btad": (lambda root: [write_btad(root, c) for c in ("01", "02")], "[01,02]"),
    "mvtec3d": (lambda root: [write_mvtec3d(root, c) for c in ("bagel", "cookie")], "[bagel,cookie]"),
    "visa": (write_visa, "[candle,pcb1]"),
}


@pytest.mark.parametrize("name", sorted(UNIFIED_LAYOUTS))
def test_the_unified_setting_on_every_benchmark_layout(tmp_path, name):
    """One PaDiM for two categories of each real benchmark's layout (the embedded textures and photos: above)."""
    writer, categories = UNIFIED_LAYOUTS[name]
    writer(tmp_path / "ds")
    cfg = compose_config(tmp_path, [*TINY_RUN, "model=padim", f"data={name}", f"data.root={tmp_path / 'ds'}",
                                    f"data.category={categories}", "setting=unified"])  # fmt: skip
    results = run(cfg)
    assert results["setting"] == "unified" and list(results["categories"]) == categories.strip("[]").split(",")
    assert [p.parent.parent.name for p in (tmp_path / "out").rglob("*.ckpt")] == ["unified"]
