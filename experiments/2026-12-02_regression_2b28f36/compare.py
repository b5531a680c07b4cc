"""Mean image / pixel AUROC and AUPRO over the seeds of each variant (results.json of the runs under a folder)."""

import json
import statistics
import sys
from pathlib import Path

METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro")


def seed_means(variant: Path) -> dict[str, dict[str, float]]:
    """Per finished run (a seed): the mean over categories of each metric. 2b28f36 rewrites results.json after each
    category and records no status, so its runs count as finished once present: read them after run.sh ends."""
    per_seed = {}
    for run in sorted(p for p in variant.iterdir() if (p / "results.json").is_file()):
        results = json.loads((run / "results.json").read_text())
        if results.get("run", {}).get("status", "done") != "done":
            continue
        per_seed[run.name] = {m: statistics.fmean(c[m] for c in results["categories"].values()) for m in METRICS}
    return per_seed


def spread(values: list[float]) -> str:
    return f"{statistics.fmean(values):+.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 else "n/a"


def main(folder: Path, references: tuple[str, ...] = ("2b28f36", "main")) -> None:
    variants = {p.name: seed_means(p) for p in sorted(folder.iterdir()) if p.is_dir()}
    print(f"| variant | seeds | {' | '.join(METRICS)} | per seed: image AUROC (mean over brick, grass, gravel) |")
    print("|---|---|" + "---|" * (len(METRICS) + 1))
    for name, per_seed in variants.items():
        cells = [spread([v[m] for v in per_seed.values()]).lstrip("+") for m in METRICS]
        seeds = ", ".join(f"{s}: {v['image_auroc']:.3f}" for s, v in per_seed.items())
        print(f"| {name} | {len(per_seed)} | {' | '.join(cells)} | {seeds} |")
    for index, reference in enumerate(references):
        paired(variants, reference, skip=references[: index + 1])


def paired(variants: dict[str, dict[str, dict[str, float]]], reference: str, skip: tuple[str, ...]) -> None:
    """Each variant not in ``skip`` (the reference and those already compared with) minus ``reference``."""
    print(f"\nPaired by seed, the difference from {reference} (mean ± std over the seeds both ran):\n")
    print(f"| variant | seeds | {' | '.join(METRICS)} |")
    print("|---|---|" + "---|" * len(METRICS))
    for name, per_seed in variants.items():
        if name in skip:
            continue
        both = sorted(set(per_seed) & set(variants.get(reference, {})))
        cells = [spread([per_seed[s][m] - variants[reference][s][m] for s in both]) for m in METRICS]
        print(f"| {name} | {len(both)} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
