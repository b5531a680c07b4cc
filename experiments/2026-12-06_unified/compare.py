"""Phase B: separate against unified, per benchmark and model: mean ± std over 3 seeds of the test metrics (mean over
categories, as results.json's ``mean``), the fit time per job (the one unified model, or the sum of the separate
models) and the highest peak RSS of a fit. Prints a Markdown table.

    .venv/bin/python experiments/2026-12-06_unified/compare.py OUT
"""

import json
import statistics
import sys
from pathlib import Path

METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro", "image_ap", "pixel_ap", "mad")


def cell(values: list[float], digits: int = 4) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main(out: Path) -> None:
    groups: dict[tuple, list[dict]] = {}
    for path in sorted(out.glob("B_*/*/results.json")):
        results = json.loads(path.read_text())
        bench = "photos" if "photos" in path.parts[-3] else "textures"
        model = "fod_plus" if "fod_plus" in path.parts[-3] else results["model"]
        groups.setdefault((bench, model, results["setting"]), []).append(results)
    print("| benchmark | model | setting | jobs | " + " | ".join(METRICS) + " | fit s per job | peak RSS MiB |")
    print("|" + "---|" * (len(METRICS) + 6))
    for (bench, model, setting), jobs in sorted(groups.items()):
        cells = [cell([j["mean"].get(m) for j in jobs]) for m in METRICS]
        unified = [c for j in jobs for name, c in j["categories"].items()]
        fits = [sum({c.get("fit_seconds", 0) for c in j["categories"].values()}) if setting == "unified"
                else sum(c.get("fit_seconds", 0) for c in j["categories"].values()) for j in jobs]  # fmt: skip
        rss = max((c.get("cost", {}).get("fit_peak_rss_mib") or 0) for c in unified)
        print(
            f"| {bench} | {model} | {setting} | {len(jobs)} | " + " | ".join(cells) + f" | {cell(fits, 1)} | {rss:.0f} |"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
