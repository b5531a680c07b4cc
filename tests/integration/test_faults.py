"""Faults: a killed run resumes exactly, a NaN loss stops cleanly, a failing category spares the others,
checkpoints are written atomically, and the same seed reproduces a run."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fod_lightning.engine.job import CategoriesFailedError, run
from fod_lightning.errors import UserError
from helpers.configs import TINY, TINY_TEXTURES

TESTS = Path(__file__).resolve().parents[1]  # tests/: helpers importable in subprocesses
METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro", "image_f1_max", "pixel_f1_max")


def cli(*args, cwd: Path):
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)  # helpers importable
    env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1", WANDB_MODE="offline",
               XDG_CACHE_HOME=str(cwd / "cache"))  # fmt: skip
    return subprocess.run([sys.executable, "-m", "fod_lightning.run", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


@pytest.mark.slow  # three CLI runs, about 2.5 minutes
def test_a_killed_run_resumes_from_last_and_ends_as_an_uninterrupted_one(tmp_path):
    base = [*TINY_TEXTURES, *TINY, "data.category=brick", "trainer.max_epochs=3", f"paths.data_dir={tmp_path}/data"]
    full = cli(*base, f"hydra.run.dir={tmp_path}/full", cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    kill = [
        "+callbacks.kill._target_=helpers.fault_callbacks.KillAt",
        "+callbacks.kill.epoch=2",
        "+callbacks.kill.batch=1",
    ]
    killed = cli(*base, *kill, f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert killed.returncode == -9  # SIGKILL in the third epoch: no clean-up ran
    assert json.loads((tmp_path / "run" / "results.json").read_text())["run"]["status"] == "running"
    resumed = cli(*base, "ckpt_path=last", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    for alarm in ("dirpath has changed", "Experiment logs directory", "will be deleted"):
        assert alarm not in resumed.stderr + resumed.stdout
    # one metrics history: every epoch's validation rows, the ones before the kill included, as in the full run
    assert validated_epochs(tmp_path / "run") == validated_epochs(tmp_path / "full") == [0, 1, 2]
    a, b = (json.loads((tmp_path / d / "results.json").read_text())["categories"]["brick"] for d in ("full", "run"))
    for name in METRICS:
        assert b[name] == pytest.approx(a[name], rel=1e-6, abs=1e-9)
    assert {k: v["epoch"] for k, v in b["best"].items()} == {k: v["epoch"] for k, v in a["best"].items()}
    assert {k: v["value"] for k, v in b["best"].items()} == pytest.approx({k: v["value"] for k, v in a["best"].items()})
    assert b["epochs"] == a["epochs"] == 3
    nothing = cli(*base, "ckpt_path=last", f"hydra.run.dir={tmp_path}/elsewhere", "task_name=other", cwd=tmp_path)
    assert nothing.returncode == 2 and "ckpt_path=last found no <category>/checkpoints/last.ckpt in" in nothing.stderr


def validated_epochs(run: Path) -> list[int]:
    with (run / "brick" / "metrics.csv").open(newline="") as f:
        return sorted({int(float(r["epoch"])) for r in csv.DictReader(f) if r.get("val/image_auroc")})


@pytest.mark.slow  # three CLI runs, about 2 minutes
def test_resuming_an_earlier_run_continues_in_its_folder_and_summarize_sees_one_job(tmp_path):
    base = [*TINY_TEXTURES, *TINY, "data.category=brick", "trainer.max_epochs=3", f"paths.data_dir={tmp_path}/data",
            f"paths.log_dir={tmp_path}/outputs"]  # fmt: skip
    kill = ["+callbacks.kill._target_=helpers.fault_callbacks.KillAt", "+callbacks.kill.epoch=2",
            "+callbacks.kill.batch=1"]  # fmt: skip
    runs = tmp_path / "outputs" / "run" / "runs"
    killed = cli(*base, *kill, f"hydra.run.dir={runs}/first", cwd=tmp_path)
    assert killed.returncode == -9
    resumed = cli(*base, "ckpt_path=last", cwd=tmp_path)  # a new run folder of the same task
    assert resumed.returncode == 0, resumed.stderr
    assert [p.name for p in runs.iterdir()] == ["first"]  # the new folder, unused, is gone
    results = json.loads((runs / "first" / "results.json").read_text())
    assert results["run"]["status"] == "done" and results["run"]["resumed"] == str(runs / "first")
    assert validated_epochs(runs / "first") == [0, 1, 2]
    from fod_lightning.reporting import summarize_folder

    summary = summarize_folder(runs)
    assert [j.status for j in summary.jobs] == ["done"] and len(summary.settings) == 1  # one job, one setting
    assert "trainer.max_epochs=3" in list(summary.settings.values())[0].label  # labelled by the job's overrides


def test_a_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(make_config, tmp_path):
    poison = ["+callbacks.poison._target_=helpers.fault_callbacks.PoisonAt", "+callbacks.poison.epoch=1"]
    cfg = make_config("data.category=brick", "trainer.max_epochs=2", *poison)
    with pytest.raises(UserError, match=r"the training loss became nan at epoch 1, step \d+ \(category brick\)"):
        run(cfg)
    last = torch.load(tmp_path / "out" / "brick" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 0 and all(torch.isfinite(v).all() for v in last["state_dict"].values())
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["run"]["status"] == "failed" and "training loss became nan" in results["run"]["error"]


def test_a_failing_category_is_recorded_and_spares_the_others(make_config, tmp_path):
    import hydra

    cfg = make_config("data.category=all")
    grass = hydra.utils.instantiate(cfg.data, category="grass")
    grass.prepare_data()
    broken = sorted((grass.category_root / "train" / "good").iterdir())[0]
    broken.write_bytes(b"truncated")
    with pytest.raises(CategoriesFailedError, match=r"1 of 3 categories failed \(grass: .*cannot read image"):
        run(cfg)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["run"]["status"] == "failed"
    grass = results["categories"]["grass"]
    assert grass["status"] == "failed" and str(broken) in grass["error"]
    for name in ("brick", "gravel"):
        assert 0.0 <= results["categories"][name]["image_auroc"] <= 1.0
    assert results["mean"]["image_auroc"] == pytest.approx(
        (results["categories"]["brick"]["image_auroc"] + results["categories"]["gravel"]["image_auroc"]) / 2
    )
    assert results["mean"]["num_categories"] == 3 and results["mean"]["covers"]["image_auroc"] == 2


def test_metrics_not_available_are_null_in_json_na_in_tables_and_left_out_of_the_mean(tmp_path):
    from fod_lightning.reporting.results import build_results, format_table, write_results

    categories = {"a": {"image_auroc": 0.8, "pixel_auroc": 0.9}, "b": {"image_auroc": float("nan"), "pixel_auroc": 0.7}}
    results = build_results("bench", "backbone", "paper", "last", categories)
    assert results["mean"]["image_auroc"] == 0.8 and results["mean"]["pixel_auroc"] == pytest.approx(0.8)
    assert results["mean"]["covers"] == {"image_auroc": 1}
    table = format_table(results)
    assert "| b | n/a | 0.7000 |" in table and "**mean** (1 of 2) | 0.8000 | 0.8000 |" in table
    saved = json.loads(write_results(results, tmp_path / "results.json").read_text())  # strict JSON: no NaN
    assert saved["categories"]["b"]["image_auroc"] is None


def test_checkpoints_are_written_atomically(make_config, tmp_path, monkeypatch):
    """A crash while a checkpoint is written leaves the previous file whole (Lightning writes through an
    fsspec transaction: a temporary file, moved into place when complete)."""
    from fsspec.implementations.local import LocalFileOpener

    run(make_config("data.category=brick", "resumable_checkpoints=true"))  # to resume it with more epochs
    path = tmp_path / "out" / "brick" / "checkpoints" / "last.ckpt"
    before = path.read_bytes()

    def crash(self, data):
        self.f.write(data[: len(data) // 2])
        raise OSError("disk gone")

    monkeypatch.setattr(LocalFileOpener, "write", crash)
    with pytest.raises(Exception, match="disk gone"):
        run(make_config("data.category=brick", f"ckpt_path={path}", "trainer.max_epochs=2"))
    monkeypatch.undo()
    assert path.read_bytes() == before


@pytest.fixture
def restores_determinism():
    """trainer.deterministic=true switches torch's deterministic algorithms on for the process and sets
    CUBLAS_WORKSPACE_CONFIG: the tests after this one run as before."""
    before = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    yield
    torch.use_deterministic_algorithms(False)
    if before is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = before


@pytest.mark.slow  # four runs, about a minute
def test_the_same_seed_reproduces_a_run_and_another_seed_does_not(make_config, tmp_path, restores_determinism):
    first = run(make_config("data.category=brick"))["categories"]["brick"]
    again = run(make_config("data.category=brick"))["categories"]["brick"]
    other = run(make_config("data.category=brick", "seed=1"))["categories"]["brick"]
    strict = run(make_config("data.category=brick", "trainer.deterministic=true"))["categories"]["brick"]
    assert all(first[m] == again[m] == strict[m] for m in METRICS)
    assert any(first[m] != other[m] for m in METRICS)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_deterministic_training_on_a_gpu_reproduces_itself(make_config, restores_determinism, compiled):
    """trainer=gpu with trainer.deterministic=true: every kernel on the path (cuBLAS, the fused correlation,
    eager or compiled with Triton, scoring, metrics) has a deterministic implementation, and two runs agree."""
    net = ["model.net.d_models=[256,512]", "model.net.depth=3", "model.net.n_heads=8"]  # the default widths
    data = ["data.category=brick", "data.crop_size=128", "data.image_size=128"]
    trainer = ["trainer=gpu", "trainer.deterministic=true", "trainer.max_epochs=2"]
    overrides = [*data, *trainer, *net, f"model.net.compile_correlation={str(compiled).lower()}"]
    tiny = [o for o in TINY_TEXTURES + TINY if o != "trainer.accelerator=cpu"]  # the tiny data, on the GPU
    torch.cuda.reset_peak_memory_stats()
    first, again = (run(make_config(*tiny, *overrides, tiny=False))["categories"]["brick"] for _ in range(2))
    assert torch.cuda.max_memory_allocated() > 0 and torch.are_deterministic_algorithms_enabled()
    assert all(first[m] == again[m] for m in METRICS), (first, again)


def test_ckpt_path_last_resumes_one_run_and_starts_its_missing_categories_afresh(make_config, tmp_path):
    from fod_lightning.engine.resume import category_config, resumed_run

    cfg = make_config("ckpt_path=last", f"paths.log_dir={tmp_path}/logs", "task_name=t")
    runs = tmp_path / "logs" / "t" / "runs"
    for run_name, category, mtime in (("a", "brick", 100), ("b", "grass", 200)):  # b is the newer run
        last = runs / run_name / category / "checkpoints" / "last.ckpt"
        last.parent.mkdir(parents=True)
        last.write_bytes(b"")
        os.utime(last, (mtime, mtime))
    assert resumed_run(cfg) == runs / "b"
    assert category_config(cfg, "grass", runs / "b").ckpt_path == str(
        runs / "b" / "grass" / "checkpoints" / "last.ckpt"
    )
    assert category_config(cfg, "brick", runs / "b").ckpt_path is None  # not run a's older brick: trained afresh
    own = Path(cfg.paths.output_dir) / "brick" / "checkpoints" / "last.ckpt"
    own.parent.mkdir(parents=True)
    own.write_bytes(b"")
    os.utime(own, (50, 50))
    assert resumed_run(cfg) == Path(cfg.paths.output_dir)  # this run folder first, however old


def test_resuming_reads_the_checkpoint_once(make_config, tmp_path, monkeypatch):
    """The resumed category's last.ckpt is read once (the engine's record, handed to Lightning); the only other read of
    that path is the explicit calibration step, of the checkpoint the resumed run saved."""
    run(make_config("data.category=brick", "resumable_checkpoints=true"))
    path = tmp_path / "out" / "brick" / "checkpoints" / "last.ckpt"
    reads, load = [], torch.load

    def counting(f, *args, **kwargs):
        if Path(str(f)).resolve() == path.resolve():
            reads.append(f)
        return load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting)
    results = run(make_config("data.category=brick", "ckpt_path=last", "trainer.max_epochs=2"))
    assert results["categories"]["brick"]["epochs"] == 2
    assert len(reads) == 2  # the resume, then the calibration of the new final checkpoint
