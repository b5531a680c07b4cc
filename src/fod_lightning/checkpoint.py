"""Reading fitted-model checkpoints safely, rebuilding them alone, and refusing mismatched use.

A checkpoint written by :class:`fod_lightning.lit_module.FODLitModule` holds, besides the weights and the
reference features: ``hyper_parameters["net"]`` (the net's config), and ``fod`` = ``{"contract": image
size, resize rule, mean, std; "fitted_on": benchmark, category, root; "thresholds": ...}``. Nothing is
unpickled beyond tensors and plain containers (``torch.load(weights_only=True)``).
"""

from pathlib import Path

import torch

from fod_lightning.errors import ConfigError


class CheckpointError(ConfigError):
    """A checkpoint file is missing, not plain data, or not a fod_lightning checkpoint."""


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint's contents, loaded without executing code from the file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: fix ckpt_path")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        raise CheckpointError(
            f"checkpoint {path} is not a plain fod_lightning checkpoint ({type(err).__name__}); it was not "
            "loaded, since that could run code from the file: use a checkpoint written by this project"
        ) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"checkpoint {path} holds no Lightning state_dict: use a checkpoint written by fod_lightning"
        )
    return checkpoint


def fitted_model_info(checkpoint: dict, path: str | Path) -> dict:
    """``{"net", "contract", "fitted_on", "thresholds"}`` of a checkpoint that rebuilds alone."""
    net = (checkpoint.get("hyper_parameters") or {}).get("net")
    meta = checkpoint.get("fod") or {}
    if not isinstance(net, dict) or not meta.get("contract"):
        raise CheckpointError(
            f"checkpoint {path} does not describe its model (written by an older fod_lightning or another "
            "tool): evaluate it with `python -m fod_lightning.run train=false ckpt_path=...` and its training config"
        )
    return {"net": net, **{k: meta.get(k) for k in ("contract", "fitted_on", "thresholds")}}


def loaded_model_info(model) -> dict:
    """:func:`fitted_model_info` of a model already loaded (an ``FODLitModule``), for :func:`check_fits`."""
    return {"net": model.net.config, "contract": model.contract, "fitted_on": model.fitted_on,
            "thresholds": model.thresholds}  # fmt: skip


def load(path: str | Path, map_location: str | torch.device = "cpu"):
    """The fitted :class:`~fod_lightning.lit_module.FODLitModule` of a checkpoint, in eval mode: its net,
    data contract (``.contract``), what it was fitted on (``.fitted_on``) and thresholds (``.thresholds``).

    ``image_score, anomaly_map = model.net.score_images(images)`` scores images normalised per the contract.
    """
    from fod_lightning.lit_module import FODLitModule

    fitted_model_info(read_checkpoint(path), path)  # one-line errors before Lightning reads it
    model = FODLitModule.load_from_checkpoint(Path(path).expanduser(), map_location=map_location, weights_only=True)
    return model.eval()


def check_fits(
    info: dict, path: str | Path, category: str | None, image_size: int | None, backbone: str | None
) -> None:
    """Refuse to use a model on another category, image size or backbone than it was fitted on.
    ``None`` skips a check. ``allow_mismatch=true`` is the explicit override (the caller's)."""
    fitted = info.get("fitted_on") or {}
    pairs = [
        ("category", fitted.get("category"), category, "data.category"),
        ("image size", (info.get("contract") or {}).get("image_size"), image_size, "data.image_size"),
        ("backbone", (info.get("net") or {}).get("backbone", {}).get("name"), backbone, "model/net/backbone"),
    ]
    for what, theirs, ours, key in pairs:
        if ours is not None and theirs is not None and str(theirs) != str(ours):
            raise ConfigError(
                f"checkpoint {path} was fitted on {what} {theirs}, not {ours}: set {key} to match, or "
                "allow_mismatch=true to use it anyway"
            )
