"""fod_lightning: FOD (Focus the Discrepancy, ICCV 2023) and the anomaly models beside it, as a Lightning + Hydra
experiment framework.

``fod_lightning.load(path)`` returns the fitted model of a checkpoint (any model, or the authors' files through
:func:`fod_lightning.deploy.checkpoint.load_model`), in eval mode, ready to score images::

    model = fod_lightning.load("outputs/run/runs/<date>/brick/checkpoints/last.ckpt")
    images = torch.stack([model.contract.preprocess(p) for p in paths])   # the model's resize and normalisation
    image_score, anomaly_map = model.net.score_images(images)
"""

import importlib

__version__ = "0.1.0"
# Public names, imported on first use: `import fod_lightning` stays light (no torch/Lightning import).
_PUBLIC = {
    "load": "fod_lightning.deploy.checkpoint",
    "load_model": "fod_lightning.deploy.checkpoint",
    "AnomalyModule": "fod_lightning.training.module",
    "FODLitModule": "fod_lightning.training.fod.module",
    "AnomalyNet": "fod_lightning.models.base",
    "FOD": "fod_lightning.models.fod.model",
    "DataContract": "fod_lightning.data.contract",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'fod_lightning' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
