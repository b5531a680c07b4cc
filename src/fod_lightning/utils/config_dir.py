"""Where the Hydra configs are, for every entry point (run, predict, export).

The repository's top-level ``conf/`` is the one source. A built wheel (``pip install .``) ships it as
``fod_lightning/conf`` (pyproject.toml maps ``conf/`` to the ``fod_lightning.conf`` package); a source checkout and
an editable install (``pip install -e .``) read ``conf/`` beside ``src/`` directly.
"""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # fod_lightning/


def config_dir() -> Path:
    """The installed package's ``conf/`` if it has one, else the source checkout's ``conf/``."""
    packaged = PACKAGE_DIR / "conf"
    if (packaged / "run.yaml").is_file():
        return packaged
    return PACKAGE_DIR.parents[1] / "conf"


# Absolute, as Hydra's config_path must be when it is not relative to the calling module.
CONFIG_DIR = str(config_dir())
