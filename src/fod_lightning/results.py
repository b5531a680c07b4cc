"""results.json, the summary tables and the per-category table printed at the end of a run.

Two readings of every metric, never mixed in one column:
- ``last`` (the headline, top-level keys of each category): the final model on the test split.
- ``best`` (the authors' protocol): the best value over validation epochs, chosen independently per
  metric, each with its epoch. Under ``val_protocol=paper`` validation *is* the test split (optimistic).
"""

import csv
import json
from pathlib import Path

METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro", "image_f1_max", "pixel_f1_max")
READINGS = {
    "last": "final model on the test split (headline)",
    "best": "best value over validation epochs, each metric chosen independently (authors' protocol)",
}


def _mean(rows: list[dict]) -> dict[str, float]:
    names = [m for m in METRICS if rows and all(m in r for r in rows)]
    return {m: sum(r[m] for r in rows) / len(rows) for m in names}


def best_values(category: dict) -> dict[str, float]:
    return {m: v["value"] for m, v in category.get("best", {}).items()}


def build_results(benchmark: str, backbone: str, protocol: str, categories: dict[str, dict]) -> dict:
    return {
        "benchmark": benchmark,
        "backbone": backbone,
        "protocol": protocol,
        "readings": READINGS,
        "categories": categories,
        "mean": _mean(list(categories.values())),
        "mean_best": _mean([best_values(c) for c in categories.values()]),
    }


def write_results(results: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(path)
    return path


def _rows(results: dict, reading: str) -> list[tuple[str, dict]]:
    if reading == "last":
        return [*results["categories"].items(), ("mean", results["mean"])]
    mean_best = results.get("mean_best", {})
    return [*((n, best_values(c)) for n, c in results["categories"].items()), ("mean", mean_best)]


def format_table(results: dict, reading: str = "last") -> str:
    """Markdown table of one reading (``last`` or ``best``): one row per category, then the mean."""
    lines = ["| category | " + " | ".join(METRICS) + " |", "|" + "---|" * (len(METRICS) + 1)]
    for name, metrics in _rows(results, reading):
        cells = [f"{metrics[m]:.4f}" if m in metrics else "-" for m in METRICS]
        lines.append(f"| {'**mean**' if name == 'mean' else name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_tables(results: dict, folder: Path) -> tuple[Path, Path]:
    """``summary.md`` (both readings) and ``summary.csv`` (one row per category and reading)."""
    md, table = folder / "summary.md", folder / "summary.csv"
    head = f"{results['benchmark']}, {results['backbone']}, validation protocol {results['protocol']}"
    parts = [f"{head}\n"]
    for reading, meaning in READINGS.items():
        parts.append(f"### {reading}: {meaning}\n\n{format_table(results, reading)}\n")
    md.write_text("\n".join(parts))
    with table.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["reading", "category", *METRICS])
        for reading in READINGS:
            for name, metrics in _rows(results, reading):
                writer.writerow([reading, name, *(f"{metrics[m]:.6f}" if m in metrics else "" for m in METRICS)])
    return md, table
