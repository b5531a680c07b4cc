"""``python -m fod_lightning.bench job`` (issue 25): the default job's wall time in the authors' training steps, timed
in the same run, and its metrics against a reference run's."""

import json

from fod_lightning.bench import job
from helpers.configs import TINY, TINY_TEXTURES


def test_job_bench_times_the_job_between_the_authors_steps(tmp_path):
    data = tmp_path / "data"
    overrides = [*TINY_TEXTURES, *TINY, "data.category=brick", f"paths.root_dir={tmp_path}", f"paths.data_dir={data}",
                 "logger=csv"]  # fmt: skip
    out = tmp_path / "job.json"
    args = ["--authors-steps", "3", "--data-root", str(data / "bench"), "--image-size", "64", "--widths", "16,32"]
    first = job.main([*args, "--out", str(out), *overrides])
    assert json.loads(out.read_text()) == json.loads(json.dumps(first))
    assert len(first["authors_steps_seconds"]) == 3 and first["job_seconds"] > 0
    assert first["job_in_authors_steps"] == first["job_seconds"] / first["authors_step_seconds"]
    assert 0.0 <= first["metrics"]["brick"]["image_auroc"] <= 1.0 and first["job_peak_rss_mib"] > 100


def test_metric_differences_are_the_largest_over_categories_and_the_mean():
    ours = {"categories": {"a": {"image_auroc": 0.9, "pixel_auroc": 0.8}, "b": {"image_auroc": 0.7}},
            "mean": {"image_auroc": 0.8}}  # fmt: skip
    theirs = {"categories": {"a": {"image_auroc": 0.91, "pixel_auroc": 0.8}, "b": {"image_auroc": 0.6}},
              "mean": {"image_auroc": 0.755}}  # fmt: skip
    found = job.metric_differences(ours, theirs)
    assert found.keys() == {"image_auroc", "pixel_auroc"}
    assert found["image_auroc"] == abs(0.7 - 0.6) and found["pixel_auroc"] == 0.0
