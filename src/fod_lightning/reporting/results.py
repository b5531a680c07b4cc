"""results.json: what one job measured, and what it was (config, overrides, seed, versions, protocol).

Two readings of every metric, never mixed in one column:
- ``test`` (the headline, top-level keys of each category): the test split, scored by the model that
  ``test_ckpt`` names (``last``: the final model; ``best``: the checkpoint best on the validation split).
- ``best`` (the authors' protocol): the best value over validation epochs, chosen independently per
  metric, each with its epoch. Under ``val_protocol=paper`` validation *is* the test split (optimistic).

Each category also has ``defects`` (when the test pictures callback ran): per defect type of the test split,
``image_auroc`` (the normal test images vs that type's images), ``pixel_aupro`` (exact, over the maps of those
images; absent without ground-truth regions) and ``num_images`` (that type's images).
"""

import json
import math
from pathlib import Path

from fod_lightning.metrics.collection import METRICS
from fod_lightning.utils.atomic import write_text_atomic

DEFECT_METRICS = ("image_auroc", "pixel_aupro")
READINGS = {
    "test": "the test split, scored by the model test_ckpt names (headline)",
    "best": "best value over validation epochs, each metric chosen independently (authors' protocol)",
}
VALIDATION_SPLITS = {
    "paper": "the test split (val_protocol=paper): a selection there is optimistic",
    "from_train": "held-out normal training images + synthetic-defect copies (val_protocol=from_train)",
}


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _mean(rows: list[dict]) -> dict[str, float]:
    """Mean of each metric over the categories where it is a number: a failed category has none, a metric
    can be not available (e.g. AUROC without anomalous test images). ``num_categories``: the categories
    planned; ``covers``: metric -> how many of them its mean covers, where that is fewer."""
    valid = [r for r in rows if r.get("status") != "failed"]
    mean, covers = {}, {}
    for m in METRICS:
        values = [r[m] for r in valid if _finite(r.get(m))]
        if values and (len(values) == len(valid) or any(not _finite(r.get(m)) and m in r for r in valid)):
            mean[m] = sum(values) / len(values)
            if len(values) < len(rows):
                covers[m] = len(values)
    if not mean:
        return {}
    return mean | {"num_categories": len(rows)} | ({"covers": covers} if covers else {})


def best_values(category: dict) -> dict[str, float]:
    return {m: v["value"] for m, v in category.get("best", {}).items() if m in METRICS}


def build_results(
    benchmark: str,
    backbone: str,
    protocol: str,
    test_ckpt: str,
    categories: dict[str, dict],
    run: dict | None = None,
    notes: list[str] | None = None,
    model: str | None = None,
    setting: str = "separate",
) -> dict:
    """The results of one job; ``run`` is :func:`fod_lightning.reporting.run_record.run_record`'s section;
    ``model``: its ``model=`` choice (fod, patchcore, padim, ...)."""
    return {
        "model": model,
        "setting": setting,  # separate: a model per category; unified: one model for all of them
        "benchmark": benchmark,
        "backbone": backbone,
        "protocol": protocol,
        "validation_split": VALIDATION_SPLITS.get(protocol, protocol),
        "test_ckpt": test_ckpt,
        "readings": READINGS,
        "categories": categories,
        "mean": _mean(list(categories.values())),
        "mean_best": _mean([best_values(c) if c.get("status") != "failed" else c for c in categories.values()]),
        "notes": list(notes or []),
        "run": run or {},
    }


def write_results(results: dict, path: Path) -> Path:
    """Atomic write: a reader never sees half a file (jobs of a sweep are read while others run)."""
    return write_text_atomic(path, json.dumps(_nan_to_null(results), indent=2, default=str))


def _nan_to_null(value):
    """NaN (a metric not available) as JSON null: bare NaN is not valid JSON."""
    if isinstance(value, dict):
        return {k: _nan_to_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_null(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _cell(metrics: dict, name: str) -> str:
    if name not in metrics:
        return "-"
    return f"{metrics[name]:.4f}" if _finite(metrics[name]) else "n/a"


def _mean_label(mean: dict) -> str:
    covered = min(mean.get("covers", {}).values(), default=mean.get("num_categories"))
    total = mean.get("num_categories")
    return "**mean**" if covered == total else f"**mean** ({covered} of {total})"


def _rows(results: dict, reading: str) -> list[tuple[str, dict]]:
    if reading == "test":
        return [*results["categories"].items(), ("mean", results["mean"])]
    mean_best = results.get("mean_best", {})
    return [*((n, best_values(c)) for n, c in results["categories"].items()), ("mean", mean_best)]


def format_table(results: dict, reading: str = "test") -> str:
    """Markdown table of one job and one reading (``test`` or ``best``): one row per category, then the mean."""
    lines = ["| category | " + " | ".join(METRICS) + " |", "|" + "---|" * (len(METRICS) + 1)]
    for name, metrics in _rows(results, reading):
        cells = [_cell(metrics, m) for m in METRICS]
        lines.append(f"| {_mean_label(metrics) if name == 'mean' else name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_defect_table(results: dict) -> str:
    """Markdown table of the per-defect-type numbers: one row per category and defect type ("" if none)."""
    lines = ["| category | defect type | images | " + " | ".join(DEFECT_METRICS) + " |",
             "|" + "---|" * (len(DEFECT_METRICS) + 3)]  # fmt: skip
    for category, result in results["categories"].items():
        for defect, numbers in (result.get("defects") or {}).items():
            cells = [f"{numbers[m]:.4f}" if m in numbers else "-" for m in DEFECT_METRICS]
            lines.append(f"| {category} | {defect} | {numbers.get('num_images', '?')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""
