"""Summarise a run or sweep folder: jobs grouped by setting (everything but category and seed), mean and
standard deviation over seeds per category, a comparison across settings, failed and unfinished jobs.

python -m fod_lightning.summarize outputs/run/multiruns/2026-11-28_12-00-00 [--wandb]

Writes summary.md, summary.csv and summary.png into the folder; --wandb also writes (or updates) the
folder's one W&B summary run.
"""

import argparse
import sys
from pathlib import Path

from fod_lightning.reporting.ending import summarize_and_log
from fod_lightning.utils.entry import run_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--wandb", action="store_true", help="write the folder's W&B summary run")
    parser.add_argument("--project", help="W&B project (default: the jobs' logger.wandb.project)")
    parser.add_argument("--entity", help="W&B entity (default: the jobs' logger.wandb.entity)")
    parser.add_argument("--group", help="W&B group (default: the jobs' logger.wandb.group)")
    args = parser.parse_args(argv)
    summary, run_dir = run_command(lambda: summarize_and_log(args.folder, args.wandb, True, args.project,
                                                             args.entity, args.group))  # fmt: skip
    if run_dir is not None:
        print(f"W&B summary run: {run_dir}")
    written = [args.folder / "summary.md", args.folder / "summary.csv", *([summary.figure] if summary.figure else [])]
    print("written:", *written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
