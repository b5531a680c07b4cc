"""Console scripts (pyproject.toml ``[project.scripts]``) whose module's ``main`` does not return an exit status.

The others point at their module's ``main`` directly: ``fod-run``, ``fod-predict`` and ``fod-export`` (Hydra
mains, which return None when called without arguments) and ``fod-summarize`` (returns the exit status).
"""


def bench() -> None:
    """``fod-bench``: ``python -m fod_lightning.bench``, whose ``main`` returns the record (a dict, not a status)."""
    from fod_lightning.bench.__main__ import main

    main()
