"""Checks shared by every command: mandatory settings and loader sizes, as one-line ``ConfigError``s."""

from omegaconf import DictConfig, OmegaConf

from fod_lightning.errors import ConfigError


def check_given(cfg: DictConfig, usage: str) -> None:
    """The command's mandatory top-level settings (``???`` in its config) are given; ``usage`` is its command
    line. Nothing else is resolved (interpolations through ``${hydra:...}`` may not be yet)."""
    missing = [k for k in cfg if k != "hydra" and OmegaConf.is_missing(cfg, k)]
    if missing:
        raise ConfigError(f"{' and '.join(missing)} must be given: {usage}")


def is_int(value: object) -> bool:
    """An integer, not a bool (YAML's ``true`` is a bool, and bool is a subclass of int)."""
    return isinstance(value, int) and not isinstance(value, bool)


WORKERS = "loader worker processes; 0 loads in the main process"


def check_count(key: str, value: object, low: int, meaning: str, example: int) -> None:
    """``value`` of setting ``key`` is an integer >= ``low`` (0 or 1), as a DataLoader needs it (it would fail
    only when a loader is first built, with a traceback); ``meaning`` and ``example`` go into the message."""
    if not (is_int(value) and value >= low):
        kind = "positive" if low >= 1 else "non-negative"
        raise ConfigError(f"{key}={value!r} must be a {kind} integer ({meaning}): e.g. {key}={example}")
