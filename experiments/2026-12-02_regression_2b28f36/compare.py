"""Mean image / pixel AUROC and AUPRO over the seeds of each variant (results.json of the runs under a folder)."""

import json
import statistics
import sys
from pathlib import Path

METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro")


def main(folder: Path) -> None:
    print(f"| variant | seeds | {' | '.join(METRICS)} | per seed: image AUROC (mean over brick, grass, gravel) |")
    print("|---|---|" + "---|" * (len(METRICS) + 1))
    for variant in sorted(p for p in folder.iterdir() if p.is_dir()):
        per_seed = {}
        for run in sorted(p for p in variant.iterdir() if (p / "results.json").is_file()):
            results = json.loads((run / "results.json").read_text())
            if results.get("run", {}).get("status", "done") != "done":
                continue
            per_seed[run.name] = {m: statistics.fmean(c[m] for c in results["categories"].values()) for m in METRICS}
        cells = []
        for m in METRICS:
            values = [v[m] for v in per_seed.values()]
            cells.append(f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}")
        seeds = ", ".join(f"{s}: {v['image_auroc']:.3f}" for s, v in per_seed.items())
        print(f"| {variant.name} | {len(per_seed)} | {' | '.join(cells)} | {seeds} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
