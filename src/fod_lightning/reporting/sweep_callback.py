"""Hydra callback: when a multirun ends, summarise its folder (and write its one W&B summary run)."""

import logging
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("fod_lightning")


class SweepSummary(Callback):
    """Runs in the process that launched the sweep, after every job returned (basic, joblib, submitit and
    Optuna alike). If that process is gone, ``python -m fod_lightning.summarize DIR [--wandb]`` does the same."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from fod_lightning.reporting import summarize_folder
        from fod_lightning.reporting.wandb_summary import log_summary_run

        folder = Path(str(config.hydra.sweep.dir))
        try:
            summary = summarize_folder(folder)
            print(f"\n{summary.markdown}\nsweep summary: {folder / 'summary.md'}")
            for job in summary.not_finished:
                print(f"warning: job {job.folder} {job.status}: {job.detail}", file=sys.stderr)
            if "wandb" in (config.get("logger") or {}):
                log_summary_run(summary)
        except Exception as err:  # a finished sweep must not end in a traceback because of its summary
            log.error("could not summarise %s (%s): run python -m fod_lightning.summarize %s", folder, err, folder)
