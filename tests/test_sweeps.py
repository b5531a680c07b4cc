"""Sweeps: Hydra multirun (basic, joblib, submitit), Optuna, the summary over settings and seeds, W&B groups."""

import json
import statistics
import sys
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from conftest import TINY, TINY_TEXTURES
from fod_lightning import run as run_module
from fod_lightning import summarize

# Sweep jobs without the slow parts that these tests do not look at (panels, progress bars).
QUICK = [*TINY_TEXTURES, *TINY, "~callbacks.test_pictures"]


def hydra_main(monkeypatch, tmp_path: Path, *overrides: str):
    """``python -m fod_lightning.run ARGS`` in this process (as the CLI, without a new interpreter)."""
    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", ["fod_lightning.run", *overrides, f"paths.root_dir={tmp_path}"])
    try:
        run_module.main()
    finally:
        GlobalHydra.instance().clear()


def results_below(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*/results.json"))]


def test_multirun_over_categories_seeds_and_settings_is_summarised_per_setting(monkeypatch, tmp_path):
    sweep = tmp_path / "sweep"
    hydra_main(monkeypatch, tmp_path, "-m", *QUICK, "data.category=brick,grass", "seed=1,2", "model.lambda1=0.5,1.0",
               f"hydra.sweep.dir={sweep}")  # fmt: skip
    jobs = results_below(sweep)
    assert len(jobs) == 8 and {j["run"]["status"] for j in jobs} == {"done"}
    combos = {(j["run"]["config"]["model"]["lambda1"], j["run"]["seed"], *j["categories"]) for j in jobs}
    assert combos == {(lam, seed, cat) for lam in (0.5, 1.0) for seed in (1, 2) for cat in ("brick", "grass")}
    for job in jobs:  # each results file knows its run
        run = job["run"]
        assert set(run["swept"]) == {"data.category", "seed", "model.lambda1"}
        assert f"seed={run['seed']}" in run["overrides"] and run["config_file"] == ".hydra/config.yaml"
        assert run["config"]["data"]["category"] == next(iter(job["categories"]))
    # the sweep's own summary (written when the multirun ended): 2 settings x 2 categories, mean and std over seeds
    rows = list(csv_rows(sweep / "summary.csv"))
    for lam in ("0.5", "1.0"):
        for category in ("brick", "grass"):
            values = [j["categories"][category]["image_auroc"] for j in jobs
                      if category in j["categories"] and j["run"]["config"]["model"]["lambda1"] == float(lam)]  # fmt: skip
            (row,) = [r for r in rows if r["setting"] == f"model.lambda1={lam}" and r["reading"] == "test"
                      and r["category"] == category]  # fmt: skip
            assert row["seeds"] == "2"
            assert float(row["image_auroc_mean"]) == pytest.approx(statistics.fmean(values), abs=1e-6)
            assert float(row["image_auroc_std"]) == pytest.approx(statistics.stdev(values), abs=1e-6)
    md = (sweep / "summary.md").read_text()
    assert "8 of 8 jobs finished; 2 setting(s)" in md and "## Settings compared" in md
    assert "| model.lambda1=0.5 | paper | last | 2 | 2 |" in md and (sweep / "summary.png").is_file()
    # one W&B summary run for the folder: written again, it keeps its id
    assert summarize.main([str(sweep), "--wandb"]) == 0
    assert summarize.main([str(sweep), "--wandb"]) == 0
    runs = sorted((sweep / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and len({r.name.rsplit("-", 1)[-1] for r in runs}) == 1


def csv_rows(path: Path):
    import csv

    with path.open() as f:
        yield from csv.DictReader(f)
