"""Hydra's Optuna sweeper with a study that outlives its process: kept in a SQLite file of its sweep folder, and
continued by running the same command with ``hydra.sweep.dir=<that folder>``."""

import logging
from importlib import metadata

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

from fod_lightning.launch.optuna_study import sqlite_file, trials_so_far
from fod_lightning.utils.entry import fail

log = logging.getLogger("fod_lightning")


class ContinuingOptunaSweeper(OptunaSweeper):
    """Numbers the trials of a continued study after the stored ones, so their job folders never overwrite the
    earlier trials' (Hydra's sweeper numbers every launch from 0)."""

    def sweep(self, arguments: list[str]) -> None:
        impl = self.sweeper
        file = sqlite_file(impl.storage)
        if impl.storage is not None:
            sqlalchemy = metadata.version("sqlalchemy")
            if int(metadata.version("optuna").split(".")[0]) < 3 and int(sqlalchemy.split(".")[0]) >= 2:
                fail(
                    f"hydra.sweeper.storage={impl.storage} needs SQLAlchemy 1.4 beside optuna "
                    f"{metadata.version('optuna')} (found {sqlalchemy}): pip install 'sqlalchemy>=1.4,<2' "
                    "'alembic<1.14', or keep the study in memory with hydra.sweeper.storage=null"
                )
            if file is not None:
                file.parent.mkdir(parents=True, exist_ok=True)
        impl.job_idx = trials_so_far(impl.storage, impl.study_name)
        if impl.job_idx:
            log.info("continuing Optuna study %r of %s: %d trials so far", impl.study_name, impl.storage, impl.job_idx)
        elif file is not None:
            log.info("Optuna study %r kept in %s: to continue it, run the same command with hydra.sweep.dir=%s",
                     impl.study_name, file, file.parent)  # fmt: skip
        return super().sweep(arguments)
