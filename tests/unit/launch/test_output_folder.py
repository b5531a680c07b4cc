"""The output folder is checked before Hydra writes into it: an earlier result is never overwritten unasked."""

import json
import os
import subprocess
import sys

import pytest

from fod_lightning.launch.output_folder import OutputFolderCallback, OutputFolderError, check_output_folder
from helpers.configs import compose_config

FINISHED = {"run": {"status": "done"}, "categories": {"brick": {"image_auroc": 0.9}}}


def cli(module, *args, cwd):
    env = dict(os.environ, WANDB_MODE="offline", XDG_CACHE_HOME=str(cwd / "cache"))
    return subprocess.run([sys.executable, "-m", f"fod_lightning.{module}", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def error_line(proc) -> str:
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    return line


def test_a_file_a_folder_that_cannot_be_made_and_an_earlier_result_are_refused(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(
        OutputFolderError, match=r"^output folder .*a_file is a file, not a folder: choose another folder$"
    ):
        check_output_folder(tmp_path / "a_file", "results.json")
    with pytest.raises(OutputFolderError, match=r"a_file/run cannot be created \(Not a directory\)"):
        check_output_folder(tmp_path / "a_file" / "run", "results.json")
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "results.json").write_text(json.dumps(FINISHED))
    with pytest.raises(OutputFolderError, match=r"done already holds an earlier result, .*done/results.json "
                                                r"\(status done\): FIX$"):  # fmt: skip
        check_output_folder(tmp_path / "done", "results.json", "FIX")
    check_output_folder(tmp_path / "done", None)  # allowed to hold one
    stopped = {"run": {"status": "failed", "error": "data.root ..."}, "categories": {}}  # before its first category
    (tmp_path / "done" / "results.json").write_text(json.dumps(stopped))
    check_output_folder(tmp_path / "done", "results.json")
    (tmp_path / "done" / "brick" / "checkpoints").mkdir(parents=True)
    (tmp_path / "done" / "brick" / "checkpoints" / "last.ckpt").write_bytes(b"")  # killed in its first category
    with pytest.raises(OutputFolderError, match=r"results.json \(status failed\)"):
        check_output_folder(tmp_path / "done", "results.json")
    check_output_folder(tmp_path / "new" / "run", "results.json")
    assert (tmp_path / "new" / "run").is_dir()


def test_resuming_overwriting_and_extra_ddp_ranks_may_use_a_folder_with_a_result(tmp_path, monkeypatch):
    (tmp_path / "results.json").write_text(json.dumps(FINISHED))
    guard = OutputFolderCallback("results.json", resume="ckpt_path=last")

    def start(**settings):
        overrides = [f"hydra.run.dir={tmp_path}", *(f"{k}={'null' if v is None else v}" for k, v in settings.items())]
        cfg = compose_config(tmp_path, overrides)
        guard.on_run_start(cfg)

    with pytest.raises(SystemExit) as stopped:
        start(ckpt_path=None, overwrite="false")
    assert stopped.value.code == 2
    start(ckpt_path="last", overwrite="false")
    start(ckpt_path=None, overwrite="true")
    monkeypatch.setenv("LOCAL_RANK", "1")  # Lightning re-runs the command for rank 1 into rank 0's folder
    start(ckpt_path=None, overwrite="false")


def test_a_run_into_a_finished_run_folder_stops_and_keeps_its_results(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "results.json").write_text(json.dumps(FINISHED))
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    line = error_line(cli("run", "debug=fast", f"hydra.run.dir={run_dir}", cwd=tmp_path))
    fix = "choose another hydra.run.dir, resume it with ckpt_path=last, or overwrite=true to replace it"
    assert line == f"error: {run_dir} already holds an earlier result, {run_dir}/results.json (status done): {fix}"
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before  # not even Hydra's .hydra/ was written


def test_a_sweep_into_a_sweep_folder_with_finished_jobs_stops_before_its_first_job(tmp_path):
    sweep = tmp_path / "sweep"
    for job, record in (("0", {"run": {"status": "failed"}, "categories": {}}), ("1", FINISHED)):  # 0: nothing lost
        (sweep / job).mkdir(parents=True)
        (sweep / job / "results.json").write_text(json.dumps(record))
    line = error_line(cli("run", "-m", "debug=fast", "seed=1,2", f"hydra.sweep.dir={sweep}", cwd=tmp_path))
    assert line.startswith(f"error: {sweep}/1 already holds an earlier result") and "another hydra.sweep.dir" in line
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "1"]
    assert json.loads((sweep / "1" / "results.json").read_text()) == FINISHED


@pytest.mark.slow  # two training runs, about 30 s
def test_overwrite_replaces_the_earlier_runs_checkpoints(tmp_path):
    run_dir = tmp_path / "run"
    args = ["debug=fast", "data.category=brick", f"hydra.run.dir={run_dir}"]
    assert cli("run", *args, cwd=tmp_path).returncode == 0
    last = run_dir / "brick" / "checkpoints" / "last.ckpt"
    first = last.read_bytes()
    again = cli("run", *args, "overwrite=true", "seed=1", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert sorted(p.name for p in last.parent.iterdir()) == sorted(
        ["last.ckpt", "best_image_auroc.ckpt", "best_pixel_auroc.ckpt"]
    )  # no *-v1.ckpt
    assert last.read_bytes() != first  # the new run's model (another seed), not the earlier one


def test_predict_refuses_an_output_dir_with_predictions_or_that_is_a_file(tmp_path):
    out = tmp_path / "preds"
    out.mkdir()
    (out / "scores.csv").write_text("image,score,label,output,error\n")
    args = [f"ckpt_path={tmp_path / 'model.ckpt'}", f"input={tmp_path}"]
    line = error_line(cli("predict", *args, f"output_dir={out}", cwd=tmp_path))
    assert line.endswith("scores.csv: choose another output_dir, or overwrite=true to replace it")
    line = error_line(cli("predict", *args, f"output_dir={out}", "overwrite=true", cwd=tmp_path))
    assert "names no image file" in line  # past the folder check: the next problem is the input
    line = error_line(cli("predict", *args, f"output_dir={out / 'scores.csv'}", cwd=tmp_path))
    assert line == f"error: output_dir={out / 'scores.csv'} is a file, not a folder: choose another output_dir"
    line = error_line(cli("predict", f"input={tmp_path}", cwd=tmp_path))
    assert line == ("error: ckpt_path and output_dir must be given: python -m fod_lightning.predict ckpt_path=CKPT "
                    "input=IMAGES output_dir=DIR")  # fmt: skip


@pytest.mark.parametrize(("key", "value", "says"), [("batch_size", 0, "positive"), ("num_workers", -1, "non-negative")])
def test_predict_refuses_a_bad_batch_size_or_worker_count_before_it_loads_anything(tmp_path, key, value, says):
    from omegaconf import OmegaConf

    from fod_lightning.errors import ConfigError
    from fod_lightning.predict import predict

    cfg = OmegaConf.create({"ckpt_path": str(tmp_path / "missing.ckpt"), "input": str(tmp_path),
                            "output_dir": str(tmp_path / "out"), "batch_size": 8, "num_workers": 0})  # fmt: skip
    cfg[key] = value
    with pytest.raises(ConfigError, match=rf"^{key}={value} must be a {says} integer \(.*\): e.g. {key}=\d$"):
        predict(cfg)
