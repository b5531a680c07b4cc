"""fod_lightning: FOD (Focus the Discrepancy, ICCV 2023) as a Lightning + Hydra experiment framework.

``fod_lightning.load(path)`` returns the fitted model of a checkpoint, ready to score images.
"""

__version__ = "0.1.0"
__all__ = ["load"]


def __getattr__(name: str):
    # imported on first use: `import fod_lightning` stays light (no torch/Lightning import)
    if name == "load":
        from fod_lightning.deploy.checkpoint import load

        return load
    raise AttributeError(f"module 'fod_lightning' has no attribute {name!r}")
