"""``python -m fod_lightning.bench floor`` (issue 25): a training step's time split by kind of operation, against the
floor its counted floating-point operations give at this machine's matrix-product rate."""

import json

import pytest

from fod_lightning.bench import floor


def test_floor_bench_splits_the_step_and_counts_its_operations(tmp_path):
    out = tmp_path / "floor.json"
    record = floor.main(["--data-root", str(tmp_path / "data"), "--image-size", "64", "--widths", "16,32", "--steps",
                         "2", "--out", str(out)])  # fmt: skip
    assert json.loads(out.read_text()) == json.loads(json.dumps(record))
    assert record["gflop_per_step"] > 0 and record["matmul_gflop_per_second"] > 0
    assert record["floor_seconds"] == pytest.approx(record["gflop_per_step"] / record["matmul_gflop_per_second"])
    assert record["step_over_floor"] > 1  # nothing beats the machine's own matrix-product rate
    parts = record["seconds_by_kind"]
    assert set(parts) == {"matrix products", "transcendental", "other"}
    assert sum(parts.values()) == pytest.approx(record["step_seconds"])


def test_operations_are_sorted_by_kind():
    assert floor.kind("aten::bmm") == "matrix products" and floor.kind("aten::log_") == "transcendental"
    assert floor.kind("aten::add_") == "other"
