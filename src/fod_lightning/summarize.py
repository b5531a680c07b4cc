"""Turn a run or multirun folder into one per-category + mean table (Markdown and CSV).

python -m fod_lightning.summarize outputs/run/multiruns/2026-11-28_12-00-00
"""

import argparse
import json
import sys
from pathlib import Path

from fod_lightning.plots import metric_bars
from fod_lightning.results import METRICS, build_results, format_table, write_tables


def collect(folder: Path) -> dict:
    """Merge every ``results.json`` below ``folder`` (one per job) into one results dict."""
    files = sorted(folder.rglob("results.json"))
    if not files:
        raise FileNotFoundError(f"no results.json below {folder}: point at a run or multirun output folder")
    merged, heads = {}, set()
    for path in files:
        results = json.loads(path.read_text())
        heads.add((results["benchmark"], results["backbone"], results.get("protocol", "paper")))
        for name, metrics in results["categories"].items():
            if name in merged:
                raise ValueError(
                    f"category {name} appears twice below {folder} ({path}): summarize one sweep at a time"
                )
            merged[name] = metrics
    if len(heads) > 1:
        raise ValueError(f"{folder} mixes benchmarks/backbones/protocols {sorted(heads)}: summarize them separately")
    benchmark, backbone, protocol = heads.pop()
    return build_results(benchmark, backbone, protocol, merged)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    try:
        results = collect(args.folder)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    md, table = write_tables(results, args.folder)
    title = f"{results['benchmark']}, {results['backbone']} (final model)"
    metric_bars(results["categories"], METRICS, title, args.folder / "metrics_per_category.png")
    print(format_table(results))
    print(f"written: {md} {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
