"""What a checkpoint of an :class:`~fod_lightning.training.module.AnomalyModule` holds beside its weights, and the one
typed record it is read into.

A Lightning checkpoint of this project holds ``state_dict``, ``hyper_parameters`` (the module's arguments, with the
net's config under ``net``) and, under :data:`META_KEY`, what makes it rebuild and be used alone: the module class, the
data contract, what it was fitted on, the calibrated thresholds and the frozen backbone's fingerprint. Formats:

- 3 (now): the entries ``anomaly_model`` and ``best_epochs``;
- 2: the same under ``fod`` and ``fod_best``;
- 1: as 2 without the module class (only FOD wrote it; its reader is registered by FOD's slice).
"""

from dataclasses import dataclass, field
from pathlib import Path

from fod_lightning.errors import CheckpointError

FORMAT = 3
META_KEY, BEST_KEY = "anomaly_model", "best_epochs"
OLD_KEYS = {"meta": "fod", "best": "fod_best"}  # formats 1 and 2
OPTIMIZER_KEYS = ("optimizer_states", "lr_schedulers")  # what resuming needs beyond the weights


@dataclass(frozen=True)
class CheckpointRecord:
    """A checkpoint's metadata, parsed once (:meth:`of`); ``contents`` is the loaded file itself."""

    path: Path | None
    format: int
    module: str | None  # the AnomalyModule class, ``package.module.Class``; None in format 1
    hyper_parameters: dict
    contract: dict | None
    fitted_on: dict | None
    thresholds: dict | None
    validation_thresholds: dict | None  # the F1-max thresholds of the validation before the save (val_f1 calibration)
    backbone: dict | None  # {"fingerprint": ..., "in_checkpoint": bool}; None when the net has no backbone
    best: dict = field(default_factory=dict)
    epoch: int | None = None
    resumable: bool = False  # holds the optimizer state that resuming the training needs
    contents: dict = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, contents: object, path: str | Path | None = None) -> "CheckpointRecord":
        """The record of a loaded Lightning checkpoint of any format; a file that is none is refused by name."""
        where = f"checkpoint {path}" if path is not None else "the checkpoint"
        if not isinstance(contents, dict) or not isinstance(contents.get("state_dict"), dict):
            raise CheckpointError(f"{where} holds no Lightning state_dict: use a checkpoint written by fod_lightning")
        if META_KEY in contents:
            meta, best, version = contents[META_KEY] or {}, contents.get(BEST_KEY) or {}, None
        else:
            meta, best = contents.get(OLD_KEYS["meta"]) or {}, contents.get(OLD_KEYS["best"]) or {}
            version = 2 if meta.get("module") else 1
        hyper_parameters = dict(contents.get("hyper_parameters") or {})
        if not isinstance(hyper_parameters.get("net"), dict) or not meta.get("contract"):
            raise CheckpointError(
                f"{where} does not describe its model (written by an older fod_lightning or another tool): evaluate "
                "it with `python -m fod_lightning.run train=false ckpt_path=...` and its training config"
            )
        return cls(
            path=Path(path) if path is not None else None,
            format=int(meta.get("format", version or FORMAT)),
            module=meta.get("module"),
            hyper_parameters=hyper_parameters,
            contract=meta.get("contract"),
            fitted_on=meta.get("fitted_on"),
            thresholds=meta.get("thresholds"),
            validation_thresholds=meta.get("validation_thresholds"),
            backbone=meta.get("backbone"),
            best=dict(best),
            epoch=contents.get("epoch"),
            resumable=bool(contents.get("optimizer_states")),
            contents=contents,
        )

    @property
    def net(self) -> dict:
        return self.hyper_parameters["net"]

    def described(self) -> dict:
        """What it was fitted on: category, image size, backbone name (None where unknown)."""
        return {"category": (self.fitted_on or {}).get("category"),
                "categories": (self.fitted_on or {}).get("categories"),
                "image_size": (self.contract or {}).get("image_size"),
                "backbone": (self.net.get("backbone") or {}).get("name")}  # fmt: skip

    def backbone_in_file(self) -> bool:
        """Whether the state dict holds the frozen backbone's weights (``model.save_backbone=true``, or a checkpoint
        from before lean checkpoints), so that the backbone is built without weights."""
        held = (self.backbone or {"in_checkpoint": True})["in_checkpoint"]
        return isinstance(self.net.get("backbone"), dict) and held


def metadata_entry(module: str, contract: dict | None, fitted_on: dict | None, thresholds: dict | None,
                   validation_thresholds: dict | None) -> dict:  # fmt: skip
    """The :data:`META_KEY` entry a module writes (its backbone's fingerprint is added by the module)."""
    return {"format": FORMAT, "module": module, "contract": contract, "fitted_on": fitted_on,
            "thresholds": thresholds, "validation_thresholds": validation_thresholds}  # fmt: skip
