"""Sweeps: Hydra multirun (basic, joblib, submitit), Optuna, the summary over settings and seeds, W&B groups."""

import json
import os
import re
import statistics
import sys
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from fod_lightning import run as run_module
from fod_lightning import summarize
from helpers.configs import TINY, TINY_TEXTURES

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
            values = [
                j["categories"][category]["image_auroc"]
                for j in jobs
                if category in j["categories"] and j["run"]["config"]["model"]["lambda1"] == float(lam)
            ]
            (row,) = [r for r in rows if r["setting"] == f"model.lambda1={lam}" and r["reading"] == "test"
                      and r["category"] == category]  # fmt: skip
            assert row["seeds"] == "2"
            assert float(row["image_auroc_mean"]) == pytest.approx(statistics.fmean(values), abs=1e-6)
            assert float(row["image_auroc_std"]) == pytest.approx(statistics.stdev(values), abs=1e-6)
    md = (sweep / "summary.md").read_text()
    assert "8 of 8 jobs finished; 2 setting(s)" in md and "## Settings compared" in md
    assert "| model.lambda1=0.5 | fod | paper | last | 2 | 2 |" in md and (sweep / "summary.png").is_file()
    # one W&B summary run for the folder: written again, it keeps its id
    assert summarize.main([str(sweep), "--wandb"]) == 0
    assert summarize.main([str(sweep), "--wandb"]) == 0
    runs = sorted((sweep / "wandb").glob("offline-run-*"))
    # offline-run-<date>_<time>-<run id>, and "-1" after it when both were written in the same second
    ids = {re.fullmatch(r"offline-run-\d{8}_\d{6}-(.+?)(?:-\d+)?", r.name).group(1) for r in runs}
    assert len(runs) == 2 and len(ids) == 1, [r.name for r in runs]


def csv_rows(path: Path):
    import csv

    with path.open() as f:
        yield from csv.DictReader(f)


def test_a_failed_job_is_listed_and_the_sweep_goes_on(monkeypatch, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    hydra_main(monkeypatch, tmp_path, "-m", *QUICK, "data.category=marble,brick", f"hydra.sweep.dir={sweep}")
    failed, done = results_below(sweep)
    assert failed["run"]["status"] == "failed" and failed["run"]["error"].startswith("unknown embedded textures")
    assert done["run"]["status"] == "done" and "brick" in done["categories"]
    assert "error: unknown embedded textures category 'marble'" in capsys.readouterr().err
    md = (sweep / "summary.md").read_text()
    assert "1 of 2 jobs finished" in md and "| 0 | failed | 3407 | unknown embedded textures category" in md


TINY_OPTUNA = """# @package _global_
defaults:
  - fod_optuna
hydra:
  sweeper:
    n_trials: 2
    sampler:
      n_startup_trials: 1
    params:
      model.net.d_models.0: choice(16)
      model.net.d_models.1: choice(32)
      trainer.max_epochs: choice(1)
"""


def test_optuna_two_trials_optimise_a_held_out_validation_metric_logged_to_one_wandb_group(monkeypatch, tmp_path):
    """hparams_search=fod_optuna with its search space narrowed to tiny models (a config that extends it)."""
    extra = tmp_path / "conf_extra" / "hparams_search"
    extra.mkdir(parents=True)
    (extra / "tiny_optuna.yaml").write_text(TINY_OPTUNA)
    sweep = tmp_path / "optuna"
    hydra_main(monkeypatch, tmp_path, "hparams_search=tiny_optuna", f"hydra.searchpath=[file://{extra.parent}]",
               *QUICK, "data.category=brick", "data.n_train=6", "data.val_fraction=0.34", "logger=wandb",
               f"hydra.sweep.dir={sweep}")  # fmt: skip
    jobs = results_below(sweep)
    assert len(jobs) == 2 and {j["protocol"] for j in jobs} == {"from_train"}
    space = {"model.lambda1", "model.lambda2", "model.optimizer.lr", "model.net.d_models.0", "model.net.d_models.1",
             "trainer.max_epochs"}  # fmt: skip
    for job in jobs:
        assert set(job["run"]["swept"]) == space
        config = job["run"]["config"]
        assert 0.1 <= config["model"]["lambda1"] <= 1.0 and 1e-5 <= config["model"]["optimizer"]["lr"] <= 1e-3
    # main returned optimized_metric = the held-out validation image AUROC: Optuna's best is the best of those
    objectives = [j["categories"]["brick"]["val"]["image_auroc"] for j in jobs]
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    assert best.best_value == pytest.approx(max(objectives))
    # W&B: one group named after the sweep, job_type train, a tag per swept parameter, one summary run
    from test_wandb_offline import read_offline_run

    seen = []
    for run_dir in sorted(sweep.rglob("offline-run-*")):
        (record,) = [r.run for r in read_offline_run(run_dir) if r.WhichOneof("record_type") == "run"]
        seen.append((record.job_type, record.run_group, set(record.tags)))
    assert sorted(t for t, _, _ in seen) == ["summary", "train", "train"]
    assert {g for _, g, _ in seen} == {f"run_{sweep.name}"}
    for job_type, _, tags in seen:
        if job_type == "train":
            # a tag per swept parameter, and the setting's (separate or unified)
            assert {t.split("=")[0] for t in tags if "=" in t} == space | {"setting"} and "brick" in tags


def test_submitit_local_launcher_runs_a_tiny_sweep(monkeypatch, tmp_path):
    sweep = tmp_path / "submitit"
    hydra_main(monkeypatch, tmp_path, "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
               *QUICK, "data.category=brick,grass", f"hydra.sweep.dir={sweep}")  # fmt: skip
    jobs = results_below(sweep)
    assert [next(iter(j["categories"])) for j in jobs] == ["brick", "grass"]
    assert {j["run"]["status"] for j in jobs} == {"done"}
    assert len(list((sweep / ".submitit").rglob("*_log.out"))) == 2  # each job ran as its own submitit job
    assert "2 of 2 jobs finished; 1 setting(s)" in (sweep / "summary.md").read_text()


@pytest.mark.slow
def test_joblib_launcher_runs_jobs_in_parallel_processes(monkeypatch, tmp_path):
    sweep = tmp_path / "joblib"
    hydra_main(monkeypatch, tmp_path, "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *QUICK,
               "data.category=brick", "seed=1,2", f"hydra.sweep.dir={sweep}")  # fmt: skip
    jobs = results_below(sweep)
    assert [j["run"]["seed"] for j in jobs] == [1, 2] and {j["run"]["status"] for j in jobs} == {"done"}
    assert "| brick | 2 |" in (sweep / "summary.md").read_text()  # one setting, two seeds


def test_slurm_launcher_overrides_compose_into_the_sbatch_script(make_config, tmp_path, monkeypatch):
    """hydra/launcher=slurm: partition, GPUs, CPUs, memory and time as overrides; a DDP rank per SLURM task."""
    import hydra
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from submitit.slurm.slurm import _make_sbatch_string

    cfg = make_config("hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=4",
                      "hydra.launcher.cpus_per_task=16", "hydra.launcher.mem_gb=64", "hydra.launcher.timeout_min=600",
                      "trainer=ddp", "trainer.num_nodes=2", tiny=False)  # fmt: skip
    launcher = hydra.utils.instantiate(cfg.hydra.launcher)
    assert type(launcher).__name__ == "SlurmLauncher"
    # what the launcher hands to submitit (hydra_submitit_launcher's launch(), without submitting)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit looks for srun; nothing runs it
    (tmp_path / "bin" / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    executor = submitit.AutoExecutor(folder=tmp_path, cluster="slurm")
    generic = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in generic else f"slurm_{k}": v for k, v in launcher.params.items()
                                  if k not in ("submitit_folder", "max_num_timeout")})  # fmt: skip
    script = _make_sbatch_string(command="python -m fod_lightning.run", folder=tmp_path,
                                 **executor._executor.parameters)  # fmt: skip
    for line in ("--partition=gpu", "--gpus-per-node=4", "--ntasks-per-node=4", "--cpus-per-task=16", "--mem=64GB",
                 "--time=600", "--nodes=2"):  # fmt: skip
        assert f"#SBATCH {line}\n" in script, line


def test_an_optuna_study_lives_in_its_sweep_folder_and_continues_there(monkeypatch, tmp_path):
    """The study is kept in <sweep dir>/optuna.db; the same command with that hydra.sweep.dir adds trials to it,
    numbered after the stored ones, so no earlier trial's folder is touched."""
    import optuna

    extra = tmp_path / "conf_extra" / "hparams_search"
    extra.mkdir(parents=True)
    (extra / "tiny_optuna.yaml").write_text(TINY_OPTUNA)
    sweep = tmp_path / "study"
    command = ["hparams_search=tiny_optuna", f"hydra.searchpath=[file://{extra.parent}]", *QUICK, "data.n_train=6",
               "data.category=brick", "data.val_fraction=0.34", f"hydra.sweep.dir={sweep}"]  # fmt: skip
    hydra_main(monkeypatch, tmp_path, *command, "hydra.sweeper.n_trials=1")
    first = (sweep / "0" / "results.json").read_text()
    hydra_main(monkeypatch, tmp_path, *command, "hydra.sweeper.n_trials=1")  # a new process would do the same
    study = optuna.load_study(study_name="run", storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert [t.number for t in study.trials] == [0, 1] and {t.state.name for t in study.trials} == {"COMPLETE"}
    assert (sweep / "0" / "results.json").read_text() == first  # the first trial's job is untouched
    jobs = results_below(sweep)
    assert [j["run"]["objective"]["value"] for j in jobs] == pytest.approx([t.value for t in study.trials])
    assert OmegaConf.load(sweep / "optimization_results.yaml").best_value == pytest.approx(study.best_value)
    assert "2 of 2 jobs finished" in (sweep / "summary.md").read_text()
