"""``<run>/<category>/scores.csv``: every test image's score, label and decision, for a user's own analysis."""

import csv
from pathlib import Path

from fod_lightning.utils.atomic import atomic_path

COLUMNS = ("image", "label", "score", "predicted", "defect_type")


def write_test_scores(path: Path, predictions: list[dict], threshold: float | None) -> Path:
    """One row per test image, worst-named first by defect type and path: its ``label`` (normal or anomalous, the
    ground truth), ``score``, ``predicted`` (by ``threshold``, the calibrated image threshold: anomalous at or above
    it; empty without one) and ``defect_type`` (``good`` for normal images). Written atomically."""
    names = ("normal", "anomalous")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for item in sorted(predictions, key=lambda it: (it["defect"], it["path"])):
            predicted = "" if threshold is None else names[int(item["score"] >= threshold)]
            writer.writerow([item["path"], names[item["label"]], f"{item['score']:.6g}", predicted, item["defect"]])
    return path
