"""Hydra callback of every multirun: checks before it starts, its summary when it ends."""

import logging
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("fod_lightning")


class SweepCallback(Callback):
    """Runs in the process that launches the sweep (basic, joblib, submitit and Optuna alike)."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        # The sweepers read hydra.sweep.dir before Hydra sets its config, and the default sweep folder goes
        # through ${hydra:runtime.cwd} (paths.root_dir): set it now, as Hydra does for a single run.
        HydraConfig.instance().set_config(config)
        if str(config.hydra.sweeper.get("_target_", "")).endswith("ContinuingOptunaSweeper"):
            register_continuing_sweeper()

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        """summary.md/.csv/.png in the sweep folder, and its one W&B summary run with ``logger=wandb``. If the
        launching process is gone, ``python -m fod_lightning.summarize DIR [--wandb]`` does the same."""
        from fod_lightning.reporting.ending import summarize_and_log

        folder = Path(str(config.hydra.sweep.dir))
        try:
            print()
            summarize_and_log(folder, wandb="wandb" in (config.get("logger") or {}))
            print(f"sweep summary: {folder / 'summary.md'}")
        except Exception as err:  # a finished sweep must not end in a traceback because of its summary
            log.error("could not summarise %s (%s): run python -m fod_lightning.summarize %s", folder, err, folder)


def register_continuing_sweeper() -> None:
    """Hydra finds plugins by walking the ``hydra_plugins`` namespace, which misses this package's sweeper in an
    editable install (``make install``: the path is a setuptools import hook, not a folder): register it by hand
    (Hydra's ``Plugins.register``), before Hydra builds the sweeper."""
    from hydra.core.plugins import Plugins

    from hydra_plugins.fod_lightning_sweeper.continuing_optuna import ContinuingOptunaSweeper

    Plugins.instance().register(ContinuingOptunaSweeper)
