"""A finished job warns when its validation is below chance or fell as training went on, naming the alternatives."""

import json

from fod_lightning.engine import job
from fod_lightning.engine.advice import validation_advice


def record(last: float, best: float, epoch: int = 1, one_pass: bool = False) -> dict:
    return {"val": {"image_auroc": last}, "best": {"image_auroc": {"value": best, "epoch": epoch}},
            "fitted_in_one_pass": one_pass}  # fmt: skip


def test_below_chance_and_falling_validations_are_named_with_the_alternatives():
    lines = validation_advice({"a": record(0.37, 0.41), "b": record(0.78, 0.91, 2), "c": record(0.9, 0.92),
                               "d": {"status": "failed"}}, "paper")  # fmt: skip
    assert len(lines) == 2
    assert lines[0].startswith("a: image AUROC 0.370 on the test split (used as validation) is below chance (0.5)")
    assert lines[1].startswith(
        "b: image AUROC on the test split (used as validation) fell from 0.910 (epoch 2) to 0.780"
    )
    assert all("experiment=fod_plus or model=patchcore" in line for line in lines)
    assert validation_advice({"p": record(0.8, 0.9, one_pass=True)}, "from_train") == []  # one pass: nothing fell


def test_a_job_ends_with_the_warning_and_records_it(make_config, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(job, "fit_and_test_category", lambda cfg, datamodule=None, **_: record(0.37, 0.41))
    job.run(make_config("data.category=brick"))
    notes = json.loads((tmp_path / "out" / "results.json").read_text())["notes"]
    assert any("below chance" in n for n in notes)
    assert caplog.records[-1].levelname == "WARNING" and "below chance" in caplog.records[-1].getMessage()
