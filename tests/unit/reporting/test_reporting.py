"""summarize on hand-written results: grouping by setting, mean and std over seeds, jobs that did not finish."""

import csv
import json
from pathlib import Path

import pytest

from fod_lightning import summarize


def write_job(folder: Path, seed: int, lambda1: float, scores: dict[str, float], status: str = "done",
              error: str = "") -> None:  # fmt: skip
    """A results.json as a run writes it (only the parts summarize reads)."""
    folder.mkdir(parents=True)
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "config.yaml").write_text("seed: 0\n")
    config = {"seed": seed, "model": {"lambda1": lambda1, "lr": 1e-4}, "data": {"category": next(iter(scores), "")},
              "paths": {"output_dir": str(folder)}}  # fmt: skip
    categories = {c: {"image_auroc": v, "pixel_auroc": v / 2, "best": {"image_auroc": {"value": v + 0.1, "epoch": 3}}}
                  for c, v in scores.items()}  # fmt: skip
    run = {
        "status": status,
        "error": error,
        "seed": seed,
        "config": config,
        "categories_planned": ["brick", "grass"],
        "overrides": [f"model.lambda1={lambda1}", f"seed={seed}", f"data.category={next(iter(scores), 'grass')}"],
    }
    results = {"benchmark": "b", "backbone": "x", "protocol": "from_train", "test_ckpt": "best",
               "categories": categories, "run": run}  # fmt: skip
    (folder / "results.json").write_text(json.dumps(results))


def test_summary_groups_by_setting_with_mean_and_std_over_seeds_and_lists_unfinished_jobs(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    # two settings x two seeds x two categories, one job per category
    values = {(0.5, 1, "brick"): 0.8, (0.5, 2, "brick"): 0.9, (0.5, 1, "grass"): 0.6, (0.5, 2, "grass"): 0.7,
              (1.0, 1, "brick"): 0.5, (1.0, 2, "brick"): 0.7, (1.0, 1, "grass"): 0.4,
              (1.0, 2, "grass"): 0.4}  # fmt: skip
    for num, ((lam, seed, category), v) in enumerate(values.items()):
        write_job(sweep / str(num), seed, lam, {category: v})
    write_job(sweep / "8", 3, 0.5, {}, status="failed", error="CUDA out of memory")
    write_job(sweep / "9", 3, 1.0, {}, status="running")
    (sweep / "10" / ".hydra").mkdir(parents=True)
    (sweep / "10" / ".hydra" / "config.yaml").write_text("seed: 0\n")  # started, no results yet
    write_job(sweep / "11", 1, 0.5, {"brick": 0.1})  # the same setting, category and seed again

    assert summarize.main([str(sweep)]) == 0
    err = capsys.readouterr().err
    assert "failed: CUDA out of memory" in err and "9 unfinished: stopped while running" in err
    rows = {(r["setting"], r["reading"], r["category"]): r for r in csv.DictReader((sweep / "summary.csv").open())}
    brick = rows[("model.lambda1=0.5", "test", "brick")]
    assert (brick["seeds"], brick["image_auroc_mean"], brick["image_auroc_std"]) == ("2", "0.850000", "0.070711")
    assert rows[("model.lambda1=1.0", "test", "grass")]["image_auroc_std"] == "0.000000"
    # mean row: mean over categories; std over the per-seed means (0.5: seeds 0.7 and 0.8)
    mean = rows[("model.lambda1=0.5", "test", "mean")]
    assert (mean["image_auroc_mean"], mean["image_auroc_std"]) == ("0.750000", "0.070711")
    assert rows[("model.lambda1=0.5", "best", "brick")]["image_auroc_mean"] == "0.950000"
    assert rows[("model.lambda1=1.0", "test", "mean")]["pixel_auroc_mean"] == "0.250000"
    md = (sweep / "summary.md").read_text()
    assert "9 of 12 jobs finished; 2 setting(s)" in md
    assert "| 8 | failed | 3 | CUDA out of memory |" in md
    assert "| 10 | unfinished | ? | no results.json" in md
    assert "| model.lambda1=0.5 | - | from_train | best | 2 | 2 | 0.7500 ± 0.0707 |" in md
    assert "brick seed 1 appears twice in one setting" in md
    assert (sweep / "summary.png").is_file()


def test_a_sweep_whose_jobs_all_failed_is_summarised_and_logged_without_a_figure(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "offline")
    sweep = tmp_path / "sweep"
    for num in range(2):
        write_job(sweep / str(num), num, 0.5, {}, status="failed", error="CUDA out of memory")
    assert summarize.main([str(sweep), "--wandb"]) == 0
    assert "0 of 2 jobs finished" in (sweep / "summary.md").read_text()
    assert not (sweep / "summary.png").exists()
    assert list((sweep / "wandb").glob("offline-run-*"))  # the summary run was written, without a figure


def test_settings_that_differ_only_in_code_defaults_are_kept_apart(tmp_path):
    write_job(tmp_path / "a", 1, 0.5, {"brick": 0.8})
    write_job(tmp_path / "b", 1, 0.5, {"brick": 0.6})
    results = json.loads((tmp_path / "b" / "results.json").read_text())
    results["run"]["config"]["model"]["lr"] = 1e-3  # same overrides, another config
    (tmp_path / "b" / "results.json").write_text(json.dumps(results))
    assert summarize.main([str(tmp_path)]) == 0
    labels = {r["setting"] for r in csv.DictReader((tmp_path / "summary.csv").open())}
    assert len(labels) == 2 and all(label.startswith("model.lambda1=0.5 #") for label in labels)


def test_a_key_added_later_with_a_null_default_does_not_split_a_setting(tmp_path):
    write_job(tmp_path / "old", 1, 0.5, {"brick": 0.8})
    write_job(tmp_path / "new", 2, 0.5, {"brick": 0.6})
    results = json.loads((tmp_path / "new" / "results.json").read_text())
    results["run"]["config"]["early_stopping_patience"] = None  # the newer version's config has the key, off
    (tmp_path / "new" / "results.json").write_text(json.dumps(results))
    assert summarize.main([str(tmp_path)]) == 0
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert {r["setting"] for r in rows} == {"model.lambda1=0.5"}
    mean = next(r for r in rows if r["reading"] == "test" and r["category"] == "mean")
    assert (mean["seeds"], mean["image_auroc_mean"]) == ("2", "0.700000")
    results["run"]["config"]["early_stopping_patience"] = 3  # a value: another setting
    (tmp_path / "new" / "results.json").write_text(json.dumps(results))
    assert summarize.main([str(tmp_path)]) == 0
    assert len({r["setting"] for r in csv.DictReader((tmp_path / "summary.csv").open())}) == 2


def test_one_setting_is_labelled_by_its_overrides_and_shows_its_objective(tmp_path):
    for seed, value in ((1, 0.8), (2, 0.6)):
        write_job(tmp_path / str(seed), seed, 2.0, {"brick": value})
        results = json.loads((tmp_path / str(seed) / "results.json").read_text())
        results["run"]["objective"] = {"name": "val/image_auroc", "value": value - 0.1}
        (tmp_path / str(seed) / "results.json").write_text(json.dumps(results))
    assert summarize.main([str(tmp_path)]) == 0
    assert {r["setting"] for r in csv.DictReader((tmp_path / "summary.csv").open())} == {"model.lambda1=2.0"}
    md = (tmp_path / "summary.md").read_text()
    assert "## The setting (test reading, mean over categories)" in md
    assert "| model.lambda1=2.0 | - | from_train | best | 1 | 2 | 0.6000 ± 0.1414 | 0.7000 ± 0.1414 |" in md


@pytest.mark.parametrize(("name", "protocol", "error"), [
    ("val/image_auroc", "paper", "would be measured on the test split"),
    ("val/image_auroc_best", "paper", "optimized_metric=test/image_auroc"),
    ("test/image_auroc_best", "from_train", "is unknown"),
    ("val/accuracy", "from_train", "is unknown"),
])  # fmt: skip
def test_optimized_metric_names_say_where_they_were_measured(name, protocol, error):
    from fod_lightning.engine.objective import check_objective
    from fod_lightning.errors import ConfigError

    with pytest.raises(ConfigError, match=error):
        check_objective(name, protocol)
    check_objective("test/image_auroc", "paper")  # the test split, named so
    check_objective("val/pixel_aupro_best", "from_train")


def test_objective_is_the_mean_over_the_jobs_categories():
    from fod_lightning.engine.objective import objective_value

    results = {"categories": {
        "a": {"image_auroc": 0.5, "val": {"image_auroc": 0.6}, "best": {"image_auroc": {"value": 0.9, "epoch": 1}}},
        "b": {"image_auroc": 0.7, "val": {"image_auroc": 0.8}, "best": {"image_auroc": {"value": 0.7, "epoch": 0}}},
    }}  # fmt: skip
    assert objective_value(results, "val/image_auroc") == pytest.approx(0.7)
    assert objective_value(results, "val/image_auroc_best") == pytest.approx(0.8)
    assert objective_value(results, "test/image_auroc") == pytest.approx(0.6)


def test_a_single_runs_summary_figure_stays_readable_with_a_long_setting_label(tmp_path):
    """A single run's setting is labelled by every override it was given: the legend goes below the panels, wrapped,
    so the figure keeps its width and matplotlib's layout warnings stay away."""
    import warnings

    from PIL import Image

    from fod_lightning.reporting import plots
    from fod_lightning.reporting.tables import Stat

    label = ", ".join(f"data.setting_{i}=value{i}" for i in range(14))
    stats = {c: {m: Stat(0.8, 0.01, 3) for m in ("image_auroc", "pixel_auroc")} for c in ("a", "b", "mean")}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plots.setting_bars({"s": stats}, {"s": label}, ("image_auroc", "pixel_auroc"), "title", tmp_path / "s.png")
    width, height = Image.open(tmp_path / "s.png").size
    assert width < 700 and height > width
