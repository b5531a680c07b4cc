"""DDP inside a job, on CPU (gloo): exact evaluation, the same numbers as one process for the same weights."""

import json

import pytest

from fod_lightning.reporting.results import METRICS
from fod_lightning.run import run
from helpers.cli import cli
from helpers.configs import TINY, TINY_TEXTURES


def test_two_ddp_processes_score_each_test_image_once_and_match_one_process(make_config, tmp_path):
    # 5 test images on 2 ranks: shards of 3 and 2. A padded sampler would score one image twice (6).
    # Evaluation batches of one image: each image's score is then computed exactly as in one process.
    out = tmp_path / "ddp"
    proc = cli("trainer=ddp", "trainer.devices=2", *TINY_TEXTURES, *TINY, "data.category=brick",
               "data.eval_batch_size=1", f"hydra.run.dir={out}", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads((out / "results.json").read_text())
    two = ddp["categories"]["brick"]
    trainer = ddp["run"]["config"]["trainer"]
    assert trainer["devices"] == 2 and trainer["strategy"]["_target_"] == "fod_lightning.training.strategy.DDPStrategy"
    assert two["num_images"] == 5
    # the same weights (and rank zero's reference features, saved in the checkpoint) in one process
    checkpoint = out / "brick" / "checkpoints" / "last.ckpt"
    one = run(make_config("data.category=brick", "data.eval_batch_size=1", "train=false", f"ckpt_path={checkpoint}"))
    one = one["categories"]["brick"]
    assert one["num_images"] == 5
    for metric in METRICS:
        assert two[metric] == pytest.approx(one[metric], abs=1e-12), metric
    # pictures and results written once, by rank zero, for every test image
    panels = sorted(p.name for p in (out / "brick" / "pictures" / "panels").glob("*.png"))
    assert [p[:4] for p in panels] == ["001_", "002_", "003_", "004_", "005_"]  # rank prefixes: worst first
    assert sorted(p[4:] for p in panels) == ["contamination_000.png", "good_000.png", "good_001.png",
                                             "scratch_000.png", "stain_000.png"]  # fmt: skip
    assert [p.relative_to(out) for p in out.rglob("results.json")] == [out.joinpath("results.json").relative_to(out)]


@pytest.mark.slow
def test_ddp_inside_each_job_of_a_local_multirun(tmp_path):
    """Each job starts its own ranks (re-running that job, not the sweep) and leaves no process group behind."""
    sweep = tmp_path / "sweep"
    proc = cli("-m", "trainer=ddp", "trainer.devices=2", *TINY_TEXTURES, *TINY, "~callbacks.test_pictures",
               "data.category=brick", "seed=1,2", f"hydra.sweep.dir={sweep}", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/results.json"))]
    assert [j["run"]["seed"] for j in jobs] == [1, 2] and {j["run"]["status"] for j in jobs} == {"done"}
    assert [j["categories"]["brick"]["num_images"] for j in jobs] == [5, 5]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]  # no sweep started again by a rank


def test_a_baseline_under_ddp_fits_on_every_image_and_matches_one_process(tmp_path):
    """Each rank fits PatchCore on all training images (the same bank on every rank), scores its share."""
    from helpers.configs import TINY_RUN

    out = tmp_path / "ddp"
    proc = cli("trainer=ddp", "trainer.devices=2", "model=patchcore", *TINY_TEXTURES, *TINY_RUN, "data.category=brick",
               "data.eval_batch_size=1", f"hydra.run.dir={out}", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads((out / "results.json").read_text())["categories"]["brick"]
    one = cli("model=patchcore", *TINY_TEXTURES, *TINY_RUN, "data.category=brick", "data.eval_batch_size=1",
              f"hydra.run.dir={tmp_path / 'one'}", cwd=tmp_path)  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "results.json").read_text())["categories"]["brick"]
    assert two["num_images"] == one["num_images"] == 5
    for metric in METRICS:
        assert two[metric] == pytest.approx(one[metric], abs=1e-6), metric
