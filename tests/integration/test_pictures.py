"""Test pictures: one colour scale, named thresholds, worst mistakes first, PRO and loss curves, per-defect numbers."""

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from fod_lightning.data.transforms import read_image
from fod_lightning.metrics.aupro import AUPRO
from fod_lightning.metrics.defects import defect_metrics
from fod_lightning.metrics.thresholds import OPTIMISTIC, Thresholds
from fod_lightning.reporting import plots
from fod_lightning.reporting.results import format_defect_table
from fod_lightning.reporting.tables import Stat
from fod_lightning.run import run
from fod_lightning.training.callbacks import pictures
from fod_lightning.training.callbacks.pictures import panel_order


def aupro(maps: np.ndarray, masks: np.ndarray) -> float:
    metric = AUPRO()
    metric.update(torch.from_numpy(maps), torch.from_numpy(masks))
    return float(metric.compute())


def expected_defects(scores, labels, maps, masks, defects) -> dict:
    """Each type against the normal images, with sklearn's AUROC and the project's AUPRO metric."""
    out, kinds = {}, np.array(defects)
    for kind in sorted(set(kinds[labels == 1])):
        chosen = (labels == 0) | (kinds == kind)
        auroc = roc_auc_score(labels[chosen], scores[chosen])
        out[kind] = {"image_auroc": auroc, "pixel_aupro": aupro(maps[chosen], masks[chosen]),
                     "num_images": int((kinds == kind).sum())}  # fmt: skip
    return out


def test_defect_metrics_match_sklearn_auroc_and_the_aupro_metric():
    rng = np.random.default_rng(0)
    defects = ["good"] * 5 + ["crack"] * 3 + ["hole"] * 4
    labels = np.array([d != "good" for d in defects], dtype=np.int64)
    scores = rng.normal(size=12) + labels
    maps = rng.random((12, 16, 16), dtype=np.float32)
    masks = np.zeros((12, 16, 16), dtype=np.uint8)
    for i in np.flatnonzero(labels):
        masks[i, i % 8 : i % 8 + 5, 3:9] = 1
        maps[i, i % 8 : i % 8 + 5, 3:9] += rng.random() * (i % 3)
    found = defect_metrics(scores, labels, maps, masks, defects)
    expected = expected_defects(scores, labels, maps, masks, defects)
    assert list(found) == ["crack", "hole"]
    for kind, numbers in expected.items():
        assert found[kind] == pytest.approx(numbers, abs=1e-6), kind  # torchmetrics: float32 AUROC
    assert len({found["crack"]["pixel_aupro"], found["hole"]["pixel_aupro"]}) == 2
    # without ground-truth regions (classification-only data) no pixel AUPRO
    assert "pixel_aupro" not in defect_metrics(scores, labels, maps, np.zeros_like(masks), defects)["hole"]
    # raw scores far outside [0, 1] (PatchCore's distances): no sigmoid squashing them into ties
    large = 40 + 0.001 * scores
    found = defect_metrics(large, labels, maps, masks, defects)
    for kind in expected:
        chosen = (labels == 0) | (np.array(defects) == kind)
        assert found[kind]["image_auroc"] == pytest.approx(roc_auc_score(labels[chosen], large[chosen]), abs=1e-6)


def test_panels_order_worst_false_positives_and_false_negatives_first():
    scores = np.array([0.1, 0.9, 0.5, 0.2, 0.8, 0.3, 0.7])
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    # normal by descending score alternate with anomalous by ascending score; the anomalous rest follows
    assert panel_order(scores, labels) == [1, 3, 2, 5, 0, 6, 4]


def test_threshold_source_calibrated_then_validation_then_the_test_splits_own():
    values, targets = np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])
    saved = {"source": "normal", "image": 0.5, "pixel": 0.0123, "num_images": 17, "held_out": True,
             "image_quantile": 0.99, "pixel_quantile": 0.999}  # fmt: skip
    val = {"image": 0.3, "pixel": 0.25}

    def choose_threshold(kind, calibrated, validation, protocol, values, targets):
        thresholds = Thresholds(calibrated=calibrated)
        thresholds.validation = validation
        return thresholds.choose(kind, protocol, values, targets)

    pixel = choose_threshold("pixel", saved, val, "from_train", values, targets)
    assert pixel.value == 0.0123
    assert pixel.text() == "threshold 0.0123 (calibrated on 17 held-out normal images, quantile 0.999)"
    from_train = choose_threshold("pixel", None, val, "from_train", values, targets)
    assert (from_train.value, from_train.source) == (0.25, "validation F1-max threshold, from_train")
    paper = choose_threshold("image", None, val, "paper", values, targets)  # never validation = test under paper
    assert (paper.value, paper.source) == (pytest.approx(0.8), OPTIMISTIC)
    assert OPTIMISTIC == "test split's own F1-max threshold (optimistic)"
    assert choose_threshold("pixel", {"source": "none"}, None, "paper", values, np.zeros(4)).value is None


def test_panels_share_the_stated_scale_and_mark_the_threshold():
    image, mask = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)
    with plots.PanelFigure((0.0, 3.0)) as panels:
        for amap in (np.full((8, 8), 0.2), np.linspace(0, 3, 64).reshape(8, 8)):
            fig = panels.update(image, mask, amap, 1.5, "t")
            heat = fig.axes[2].images[-1]
            assert heat.get_clim() == (0.0, 3.0)
            bar = fig.axes[-1]
            assert "fixed scale 0 to 3" in bar.get_ylabel()
            assert [line.get_ydata()[0] for line in bar.lines] == [1.5]  # the threshold on the colour bar
            assert fig.axes[3].get_title() == "prediction: score >= 1.5"


def test_a_long_panel_title_is_wrapped_inside_the_figure_and_laid_out_above_the_images():
    image, mask, amap = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8), np.zeros((8, 8))
    long_name = "x" * 200 + ".png"
    with plots.PanelFigure((0.0, 1.0)) as panels:
        fig = panels.update(image, mask, amap, 0.5, f"#1 brick / good / {long_name}: score 0.1\npixel threshold 0.5")
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        title = panels.title.get_window_extent(renderer)
        assert panels.title.get_text().count("\n") == 2  # the first line (222 characters) wrapped in two
        assert title.x0 >= 0 and title.x1 <= fig.bbox.width and title.y1 <= fig.bbox.height  # nothing cut off
        highest_axes_title = max(ax.title.get_window_extent(renderer).y1 for ax in fig.axes[:4])
        assert title.y0 >= highest_axes_title  # above the images' titles (laid out again for three lines)


def open_figures() -> list:
    return [plt.figure(number) for number in plt.get_fignums()]


def test_a_category_s_panels_reuse_one_figure_and_show_each_image_s_own_state(tmp_path):
    square, wide = np.zeros((8, 8, 3), np.uint8), np.full((6, 10, 3), 200, np.uint8)
    with plots.PanelFigure((0.0, 3.0)) as panels:
        first = panels.update(square, np.eye(8, dtype=np.uint8), np.full((8, 8), 2.0), 1.5, "first")
        assert first.axes[3].get_title() == "prediction: score >= 1.5" and panels.prediction.get_visible()
        assert panels.prediction.get_array().all()  # 2.0 >= 1.5 everywhere
        assert panels.threshold_mark.get_visible() and panels.threshold_mark.get_ydata()[0] == 1.5
        assert (panels.pictures[1].get_array()[..., 0] == 255).any()  # the mask's contour in red
        second = panels.update(square, np.zeros((8, 8), np.uint8), np.zeros((8, 8)), None, "second")
        assert second is first  # the same figure, redrawn
        assert second.axes[3].get_title() == "prediction: no threshold" and not panels.prediction.get_visible()
        assert not panels.threshold_mark.get_visible() and first._suptitle.get_text() == "second"
        assert not panels.pictures[1].get_array().any()  # no mask: no contour
        panels.update(square, np.zeros((8, 8), np.uint8), np.zeros((8, 8)), 9.0, "beyond the scale")
        assert not panels.threshold_mark.get_visible()  # off the colour bar
        third = panels.update(wide, np.zeros((6, 10), np.uint8), np.ones((6, 10)), 0.5, "another size")
        assert third is not first and first not in open_figures()  # built again for the new shape, the old closed
        assert panels.pictures[0].get_array().shape == (6, 10, 3)
        for name in ("a", "b"):
            panels.draw(wide, np.zeros((6, 10), np.uint8), np.ones((6, 10)), 0.5, name, tmp_path / f"{name}.png")
    assert third not in open_figures()  # closed on leaving
    written = [plt.imread(tmp_path / f"{name}.png").shape for name in ("a", "b")]
    assert written[0] == written[1] and written[0][1] > written[0][0]  # one layout for both


def test_histogram_threshold_line_and_values_on_bars(figures):
    scores, labels = np.array([0.1, 0.2, 0.7, 0.9]), np.array([0, 0, 1, 1])
    plots.roc_and_histogram(np.array([0, 1.0]), np.array([0, 1.0]), scores, labels, 1.0, "c", None, 0.45, "because")
    legend = [t.get_text() for t in figures[0].axes[1].get_legend().get_texts()]
    assert "threshold 0.45\n(because)" in legend
    tables = {"s": {"brick": {"image_auroc": Stat(0.8123, None, 1)}, "mean": {"image_auroc": Stat(0.8123, None, 1)}}}
    plots.setting_bars(tables, {"s": "default"}, ("image_auroc",), "title", None)
    assert [t.get_text() for t in figures[1].axes[0].texts] == ["0.812"]  # one category: no mean bar


def spy(monkeypatch) -> dict:
    """Record every panel the callback draws, the test predictions and the module's calibrated thresholds."""
    seen = {"panels": []}
    draw, end = pictures.PanelFigure.draw, pictures.TestPictures.on_test_end

    def record_panel(self, image, mask, amap, threshold, title, path):
        seen["panels"].append({"image": image, "map": amap, "threshold": threshold, "scale": self.scale,
                               "title": title, "path": path})  # fmt: skip
        draw(self, image, mask, amap, threshold, title, path)

    def record_end(self, trainer, pl_module):
        seen.update(items=pl_module.evaluator.predictions, thresholds=pl_module.thresholds.calibrated,
                    contract=trainer.datamodule.contract)  # fmt: skip
        end(self, trainer, pl_module)

    monkeypatch.setattr(pictures.PanelFigure, "draw", record_panel)
    monkeypatch.setattr(pictures.TestPictures, "on_test_end", record_end)
    return seen


def test_run_draws_worst_first_on_one_scale_with_curves_and_per_defect_numbers(make_config, tmp_path, monkeypatch):
    seen = spy(monkeypatch)
    results = run(make_config("data.category=brick", "callbacks.test_pictures.max_panels=2"))
    folder = tmp_path / "out" / "brick" / "pictures"
    assert {p.name for p in folder.glob("*.png")} == {"roc_histogram.png", "pro_curve.png", "training_losses.png",
                                                     "validation_metrics.png"}  # fmt: skip
    items = seen["items"]
    scores, labels = np.array([it["score"] for it in items]), np.array([it["label"] for it in items])
    maps, masks = np.stack([it["map"] for it in items]), np.stack([it["mask"] for it in items])
    # two panels: the highest-scored normal image, then the lowest-scored anomalous one, rank-prefixed
    drawn = seen["panels"]
    assert sorted(p.name for p in (folder / "panels").iterdir()) == [p["path"].name for p in drawn]
    normal, anomalous = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    worst = [normal[scores[normal].argmax()], anomalous[scores[anomalous].argmin()]]
    names = [f"{r:03d}_{items[k]['defect']}_{Path(items[k]['path']).stem}.png" for r, k in zip((1, 2), worst)]
    assert [p["path"].name for p in drawn] == names
    for p, k in zip(drawn, worst):  # each image at its own size (64 x 64 crops; the model's input is 32 x 32)
        assert p["image"].shape == (64, 64, 3)
        np.testing.assert_array_equal(p["map"], seen["contract"].map_to_image(maps[k], 64, 64))
    # one raw scale for the category, the calibrated pixel threshold, named
    assert {p["scale"] for p in drawn} == {(float(maps.min()), float(maps.max()))}
    assert {p["threshold"] for p in drawn} == {seen["thresholds"]["pixel"]}
    assert all("(calibrated on " in p["title"] and "held-out normal images" in p["title"] for p in drawn)
    # per-defect numbers in results.json, the printed table and the summary
    defects = json.loads((tmp_path / "out" / "results.json").read_text())["categories"]["brick"]["defects"]
    assert defects == results["categories"]["brick"]["defects"]
    expected = expected_defects(scores, labels, maps, masks, [it["defect"] for it in items])
    assert list(defects) == ["contamination", "scratch", "stain"]
    for kind, numbers in expected.items():
        assert defects[kind] == pytest.approx(numbers, abs=1e-6), kind  # torchmetrics: float32 AUROC
    assert "| brick | scratch | 1 | " in format_defect_table(results)
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "### per defect type" in md and "| brick | stain | 1 | 1 | " in md


def test_from_train_without_calibration_or_csv_log_uses_the_validation_threshold(make_config, tmp_path, monkeypatch):
    seen = spy(monkeypatch)
    run(make_config("data.category=brick", "data.n_train=6", "data.val_protocol=from_train", "data.val_fraction=0.34",
                    "model.calibration.source=none", "logger=none"))  # fmt: skip
    folder = tmp_path / "out" / "brick" / "pictures"
    assert not (folder / "training_losses.png").exists() and (folder / "pro_curve.png").is_file()
    assert seen["thresholds"] is None and len(seen["panels"]) == 5
    assert all(p["title"].endswith("(validation F1-max threshold, from_train)") for p in seen["panels"])
    names = [p["path"].name for p in seen["panels"]]
    assert sorted(names) == names and names[0].startswith("001_good_")


def test_panels_show_the_image_files_pixels_whatever_the_backbones_normalisation(make_config, monkeypatch):
    """A backbone that expects mean 0.5 / std 0.5: the panels show the image file's own pixels at its own size (not
    squashed to the model's input, not colours shifted by a normalisation)."""
    seen = spy(monkeypatch)
    half = "[0.5,0.5,0.5]"
    run(make_config("data.category=brick", "callbacks.test_pictures.max_panels=3", f"model.net.backbone.mean={half}",
                    f"model.net.backbone.std={half}"))  # fmt: skip
    contract = seen["contract"]
    assert (contract.mean, contract.std) == ((0.5,) * 3, (0.5,) * 3)
    by_name = {f"{it['defect']}_{Path(it['path']).stem}": it["path"] for it in seen["items"]}
    assert len(seen["panels"]) == 3
    for drawn in seen["panels"]:
        path = by_name[drawn["path"].stem.split("_", 1)[1]]  # <rank>_<defect>_<stem>.png
        np.testing.assert_array_equal(drawn["image"], read_image(Path(path)))
