"""The debug presets (conf/debug/): each runs; debug=fast is fast, small, scores both classes and keeps the logger
choice; generated data goes to the user's cache and W&B's files to the run's folder, never the home folder."""

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from fod_lightning.reporting.wandb_logger import WANDB_FOLDERS, wandb_folders_inside
from fod_lightning.run import CONFIG_DIR, run
from helpers.configs import TINY, TINY_TEXTURES

PRESETS = sorted(p.stem for p in (Path(CONFIG_DIR) / "debug").glob("*.yaml"))
# The tiny data and model of the other tests, with the presets' own epochs and validation schedule.
SMALL = TINY_TEXTURES + [o for o in TINY if not o.startswith(("trainer.max_epochs", "trainer.check_val_every"))]


def cli_in(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, float, Path]:
    """``python -m fod_lightning.run ARGS`` launched from an empty folder (``tmp_path/work``) with a fresh cache
    (``tmp_path/cache``) and an empty home (``tmp_path/home``); returns the process, its wall time, the folder."""
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FOD_", "WANDB_", "XDG_", "MPL"))}
    env |= {"HOME": str(home), "XDG_CACHE_HOME": str(tmp_path / "cache"), "MPLCONFIGDIR": str(tmp_path / "mpl"),
            "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "fod_lightning.run", *args], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    return proc, time.perf_counter() - start, work


def only_run_folder(work: Path) -> Path:
    """The one run folder (outputs/debug/runs/<date>): the working folder holds nothing else."""
    assert sorted(p.name for p in work.iterdir()) == ["outputs"]  # no ./data, no ./wandb
    (results,) = work.glob("outputs/debug/runs/*/results.json")
    return results.parent


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_fast_preset_scores_both_classes_quickly_with_small_outputs_and_data_in_the_cache(tmp_path):
    proc, seconds, work = cli_in(tmp_path, "debug=fast")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert seconds < 60, f"debug=fast took {seconds:.0f} s"  # about 11 s alone on 2 cores; CI machines are shared
    out = only_run_folder(work)
    results = json.loads((out / "results.json").read_text())
    assert results["run"]["status"] == "done" and list(results["categories"]) == ["brick"]
    brick = results["categories"]["brick"]
    # the whole small test split is scored: 2 normal images and one per defect family, so image AUROC is defined
    anomalous = sum(d["num_images"] for d in brick["defects"].values())
    assert brick["num_images"] == 5 and anomalous == 3
    assert set(brick["defects"]) == {"contamination", "scratch", "stain"}
    assert 0.0 <= brick["image_auroc"] <= 1.0 and brick["epochs"] == 1
    assert "No negative samples" not in proc.stderr and "No positive samples" not in proc.stderr
    # the CSV logger is on
    with open(out / "brick" / "metrics.csv") as f:
        assert {"train/loss", "val/image_auroc", "test/image_auroc"} <= set(next(csv.reader(f)))
    assert folder_bytes(out) < 200e6  # about 37 MB (three small checkpoints); was 1.6 GB
    # the small benchmark is generated in the user's cache, not in the working folder
    (data,) = (tmp_path / "cache" / "fod_lightning" / "data").glob("fod_textures-*")  # keyed by its sizes
    manifest = json.loads((data / "manifest.json").read_text())
    assert (manifest["n_train"], manifest["n_test_good"], manifest["n_test_per_defect"]) == (4, 2, 1)
    assert not any((tmp_path / "home").iterdir())


def test_fast_preset_keeps_the_logger_choice_and_wandb_writes_only_into_the_run_folder(tmp_path):
    proc, _, work = cli_in(tmp_path, "debug=fast", "logger=wandb")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = only_run_folder(work)
    assert (out / "brick" / "metrics.csv").is_file()  # the CSV log beside W&B (logger=wandb adds W&B to it)
    runs = sorted((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all((r / "files").is_dir() for r in runs)  # the category's run and the summary run
    assert list((out / "wandb" / "cache").rglob("core-debug-*.log"))  # W&B's service logs, in the run folder
    assert not any((tmp_path / "home").iterdir())  # nothing in ~/.cache/wandb, ~/.local/share/wandb, ~/.config
    assert not list((tmp_path / "cache").rglob("*wandb*"))


@pytest.mark.parametrize("preset", [p for p in PRESETS if p != "fast"])
def test_each_other_preset_runs(make_config, tmp_path, preset):
    """On the tiny config (32 px, small model): what each preset changes shows in its outputs."""
    extra = {"overfit": ["trainer.max_epochs=3"], "limit": ["data.eval_batch_size=1"]}.get(preset, [])
    cfg = make_config(*SMALL, f"debug={preset}", "data.category=brick", *extra, tiny=False)
    assert cfg.task_name == "debug"
    brick = run(cfg)["categories"]["brick"]
    out = tmp_path / "out" / "brick"
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    if preset == "overfit":  # the same 2 batches each epoch, no validation
        assert cfg.trainer.overfit_batches == 2 and brick["epochs"] == 3
        assert len([r for r in rows if r.get("train/loss")]) == 3 * 2
        assert not any(r.get("val/image_auroc") for r in rows) and brick["val"] == {}
        assert brick["num_images"] == 5  # the test still scores the whole split
    elif preset == "limit":  # 2 epochs; validation and test on the first 3 batches (of one image here)
        assert brick["epochs"] == 2 and brick["num_images"] == 3
        assert len([r for r in rows if r.get("val/image_auroc")]) == 2
    elif preset == "profile":
        assert brick["epochs"] == 1
        for stage in ("fit", "test"):
            assert "Action" in (out / f"{stage}-profile.txt").read_text()  # the simple profiler's table
    else:
        raise AssertionError(f"no check for debug={preset}: add one")


def test_fast_preset_runs_on_a_real_benchmark_layout(make_config, tmp_path):
    """The preset's embedded-benchmark settings stay with data=textures: MVTec AD takes its own data and split."""
    from helpers.datasets import write_mvtec

    write_mvtec(tmp_path / "ds", "bottle")
    cfg = make_config("data=mvtec", f"data.root={tmp_path / 'ds'}", "data.category=bottle", "debug=fast",
                      "~callbacks.progress_bar", "trainer.enable_progress_bar=false", tiny=False)  # fmt: skip
    bottle = run(cfg)["categories"]["bottle"]
    assert bottle["num_images"] == 4 and bottle["defects"]["crack"]["num_images"] == 2  # 2 good, 2 crack
    assert 0.0 <= bottle["image_auroc"] <= 1.0


def compose_run(*overrides: str):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose("run", overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()


def test_presets_leave_the_logger_choice_and_fast_shrinks_only_the_embedded_benchmark():
    for preset in PRESETS:
        assert set(compose_run(f"debug={preset}").logger) == {"csv"}
        assert set(compose_run(f"debug={preset}", "logger=wandb").logger) == {"csv", "wandb"}
    textures = compose_run("debug=fast").data
    assert (textures.n_train, textures.crop_size, textures.category) == (4, 64, "brick")
    assert textures.root.endswith("/fod_textures") and textures.image_size == 64  # its sizes pick the folder
    assert compose_run().data.root.endswith("/fod_textures") and compose_run().data.n_train == 40
    for data in ("mvtec", "btad", "mvtec3d", "visa", "folder"):  # the real benchmarks keep their own keys
        real, plain = compose_run(f"data={data}", "debug=fast").data, compose_run(f"data={data}").data
        assert set(real) == set(plain) and real.root == plain.root and real.category == plain.category
        assert real.image_size == 64 and real.eval_batch_size == 64
    assert compose_run("debug=fast", "data.category=all").data.category == "all"


def test_generated_data_goes_to_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    paths = compose_run().paths
    assert paths.cache_dir == f"{tmp_path}/xdg/fod_lightning" and paths.data_dir == f"{tmp_path}/xdg/fod_lightning/data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert compose_run().paths.data_dir == f"{tmp_path}/home/.cache/fod_lightning/data"


def test_wandb_folders_are_redirected_only_inside_the_block(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_DATA_DIR", "/somewhere")
    monkeypatch.delenv("WANDB_CACHE_DIR", raising=False)
    monkeypatch.delenv("WANDB_ARTIFACT_DIR", raising=False)
    with wandb_folders_inside(tmp_path / "run"):
        assert {os.environ[name] for name in WANDB_FOLDERS} == {
            f"{tmp_path}/run/cache", f"{tmp_path}/run/data", f"{tmp_path}/run/artifacts"}  # fmt: skip
    assert os.environ["WANDB_DATA_DIR"] == "/somewhere"
    assert "WANDB_CACHE_DIR" not in os.environ and "WANDB_ARTIFACT_DIR" not in os.environ
