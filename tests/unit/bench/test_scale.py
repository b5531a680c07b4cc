"""``python -m fod_lightning.bench scale`` (issue 25) on a tiny generated category: every model and phase is timed
with its peak memory, anomalib's coreset beside ours, and the record says what each row measured."""

import json

from fod_lightning.bench import scale


def test_scale_bench_times_every_phase_of_every_model(tmp_path):
    out = tmp_path / "scale.json"
    scale.main(
        [
            "--device",
            "cpu",
            "--train",
            "12",
            "--test",
            "9",
            "--size",
            "64",
            "--original",
            "96",
            "--steps",
            "2",
            "--anomalib",
            "--anomalib-selections",
            "5",
            "--data-root",
            str(tmp_path / "data"),
            "--out",
            str(out),
        ]
    )
    record = json.loads(out.read_text())
    phases = {(r["model"], r["phase"]) for r in record["rows"]}
    for model in ("fod", "fod_plus", "patchcore", "padim"):
        assert {(model, "features"), (model, "test scoring"), (model, "metrics")} <= phases, model
    assert ("patchcore", "coreset") in phases and ("anomalib patchcore", "coreset") in phases
    assert {("anomalib padim", "fit"), ("anomalib padim", "test scoring")} <= phases
    assert ("fod", "fit") in phases and ("fod_plus", "memory") in phases
    for row in record["rows"]:
        assert row["seconds"] >= 0 and row["peak_mib"] > 0, row
    (anomalib,) = [r for r in record["rows"] if r["model"] == "anomalib patchcore"]
    assert anomalib["extrapolated_seconds"] >= anomalib["seconds"]


def test_the_scale_bench_s_fod_plus_reads_its_memory_from_the_preset():
    assert scale.fod_plus_memory() == {"memory_weight": 0.75, "memory_ratio": 1.0, "memory_max_patches": 50000}
