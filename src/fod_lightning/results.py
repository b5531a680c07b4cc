"""results.json and the per-category table printed at the end of a run."""

import json
from pathlib import Path

METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro", "image_f1_max", "pixel_f1_max")


def mean_metrics(categories: dict[str, dict]) -> dict[str, float]:
    """Mean over categories of every metric all categories report."""
    names = [m for m in METRICS if all(m in c for c in categories.values())]
    return {m: sum(c[m] for c in categories.values()) / len(categories) for m in names}


def build_results(benchmark: str, backbone: str, protocol: str, categories: dict[str, dict]) -> dict:
    return {
        "benchmark": benchmark,
        "backbone": backbone,
        "protocol": protocol,
        "categories": categories,
        "mean": mean_metrics(categories) if categories else {},
    }


def write_results(results: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(path)
    return path


def format_table(results: dict) -> str:
    """Markdown table: one row per category, then the mean."""
    header = "| category | " + " | ".join(METRICS) + " |"
    lines = [header, "|" + "---|" * (len(METRICS) + 1)]
    rows = list(results["categories"].items()) + [("**mean**", results["mean"])]
    for name, metrics in rows:
        cells = [f"{metrics[m]:.4f}" if m in metrics else "-" for m in METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
