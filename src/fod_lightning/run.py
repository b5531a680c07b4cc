"""Hydra entry: fit and test a model on one category, a list of categories, or all categories of a benchmark.

python -m fod_lightning.run                      # embedded benchmark, all categories
python -m fod_lightning.run data=mvtec data.root=/data/mvtec data.category=bottle
python -m fod_lightning.run -m data.category=brick,grass seed=1,2   # a sweep: one job per combination

The arguments are checked before torch or Lightning is imported; the job itself is
:func:`fod_lightning.engine.job.run`.
"""

import math
import sys
import warnings

import hydra
from omegaconf import DictConfig, OmegaConf

from fod_lightning.utils.command_line import check_command_line
from fod_lightning.utils.config_dir import CONFIG_DIR
from fod_lightning.utils.entry import run_command
from fod_lightning.utils.hydra_job import in_multirun, sweep_group

__all__ = ["CONFIG_DIR", "main", "run"]
# The frozen backbone stays in eval mode on purpose.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
OmegaConf.register_new_resolver("sweep_group", sweep_group, replace=True)


def run(cfg: DictConfig) -> dict:
    """The job (:func:`fod_lightning.engine.job.run`), imported on first use."""
    from fod_lightning.engine.job import run as job

    return job(cfg)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="run")
def hydra_main(cfg: DictConfig) -> float | None:
    """Run the job; return ``optimized_metric`` (mean over the job's categories) for a sweeper.

    Bad input or config is the user's to fix: one line naming the file or key and the fix. In a multirun a
    failed job returns nan (its results.json says ``failed``) and the sweep goes on.
    """
    from fod_lightning.launch.ddp_jobs import ddp_job_scope

    with ddp_job_scope():
        results = run_command(lambda: run(cfg), keep_going=in_multirun())
    if results is None:
        return math.nan
    objective = results["run"].get("objective")  # computed once, by the job, and kept in results.json
    return objective["value"] if objective else None


def main() -> float | None:
    """``python -m fod_lightning.run`` / ``fod-run``: the command line checked (one line for a mistake), then Hydra."""
    run_command(lambda: check_command_line("run", sys.argv[1:]))
    return hydra_main()


if __name__ == "__main__":
    main()
