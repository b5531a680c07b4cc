"""Mean ± std over seeds of each job's category means, per model, straight from the jobs' results.json; used where
`summarize` keeps jobs of one setting apart (phase H: its first job started before the config gained the key
`early_stopping_patience: null`, which changes nothing but the config's hash).

    .venv/bin/python experiments/2026-12-02_fod_plus/seed_means.py /tmp/fod_plus/H_compare [more sweep folders]
"""

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro", "image_f1_max", "fit_seconds")


def category_means(results: dict) -> dict[str, float]:
    categories = results["categories"].values()
    return {m: statistics.fmean(c[m] for c in categories) for m in METRICS}


def main(sweeps: list[Path]) -> None:
    per_model: dict[str, list[dict[str, float]]] = defaultdict(list)
    for results_file in sorted(f for sweep in sweeps for f in sweep.glob("*/results.json")):
        results = json.loads(results_file.read_text())
        name = f"{results['model']} ({results['protocol']})"
        per_model[name].append(category_means(results) | {"seed": results["run"]["seed"]})
    print("| model | seeds | " + " | ".join(METRICS) + " |\n|---|---|" + "---|" * len(METRICS))
    for name, jobs in per_model.items():
        cells = [f"{statistics.fmean(j[m] for j in jobs):.4f} ± {statistics.stdev(j[m] for j in jobs):.4f}"
                 for m in METRICS]  # fmt: skip
        print(f"| {name} | {', '.join(str(j['seed']) for j in jobs)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main([Path(p) for p in sys.argv[1:]])
