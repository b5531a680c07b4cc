"""The Optuna study of a sweep, kept in a SQLite file (``hydra.sweeper.storage``) so that it outlives its process."""

from pathlib import Path
from typing import Any

SQLITE = "sqlite:///"


def sqlite_file(storage: Any) -> Path | None:
    """The file of a ``sqlite:///<path>`` storage (None for other storages and for the in-memory study)."""
    return Path(storage[len(SQLITE) :]) if isinstance(storage, str) and storage.startswith(SQLITE) else None


def trials_so_far(storage: Any, study_name: str | None) -> int:
    """How many trials (finished, failed or cut short) the stored study already holds: 0 for a new one."""
    file = sqlite_file(storage)
    if storage is None or study_name is None or (file is not None and not file.exists()):
        return 0
    import optuna

    try:
        return len(optuna.load_study(study_name=study_name, storage=storage).trials)
    except KeyError:  # no study of that name in the storage yet
        return 0


def continued_study(sweeper: Any) -> bool:
    """Whether this sweep continues a stored study, whose trials its new jobs are numbered after (the sweeper of
    ``hparams_search``: hydra_plugins.fod_lightning_sweeper)."""
    continuing = str(sweeper.get("_target_", "")).endswith("ContinuingOptunaSweeper")
    return continuing and trials_so_far(sweeper.get("storage"), sweeper.get("study_name")) > 0
