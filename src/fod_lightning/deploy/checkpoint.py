"""Reading fitted-model checkpoints safely, rebuilding them alone, and refusing mismatched use.

A checkpoint written by :class:`fod_lightning.training.fod_module.FODLitModule` holds, besides the weights and the
reference features: ``hyper_parameters["net"]`` (the net's config), and ``fod`` = ``{"contract": image
size, resize rule, mean, std; "fitted_on": benchmark, category, root; "thresholds": ...}``. Nothing is
unpickled beyond tensors and plain containers (``torch.load(weights_only=True)``).
"""

import pickle
import zipfile
from pathlib import Path

import torch

from fod_lightning.errors import ConfigError, one_line


class CheckpointError(ConfigError):
    """A checkpoint file is missing, not plain data, or not a fod_lightning checkpoint."""


ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since torch 1.6
PICKLE_MAGIC = b"\x80"  # a pickle of protocol >= 2: torch's legacy format
WEIGHTS_ONLY_REFUSAL = "Weights only load failed"  # how torch.load(weights_only=True) words its refusals
CKPT_PLACES = ("*.ckpt", "checkpoints/*.ckpt", "*/checkpoints/*.ckpt", "*/*/checkpoints/*.ckpt")  # run, multirun


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint's contents, loaded without executing code from the file."""
    path = Path(path).expanduser()
    zipped = check_checkpoint_file(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)  # mmap: zip format only
    except Exception as err:
        raise load_error(path, err) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"checkpoint {path} holds no Lightning state_dict: use a checkpoint written by fod_lightning"
        )
    return checkpoint


def load_error(path: Path, err: Exception) -> CheckpointError:
    """What ``torch.load(weights_only=True)`` failing on a file in torch's format means: a refusal (the file holds
    more than tensors and plain data), or a damaged file."""
    message = str(err)
    if "GLOBAL" in message:  # torch names the function or class the file asks for: e.g. os.system
        return CheckpointError(
            f"checkpoint {path} is not a plain fod_lightning checkpoint ({type(err).__name__}); it was not "
            "loaded, since that could run code from the file: use a checkpoint written by this project"
        )
    if isinstance(err, pickle.UnpicklingError) or WEIGHTS_ONLY_REFUSAL in message:  # e.g. "Unsupported operand"
        reason = message.partition("WeightsUnpickler error:")[2].partition("Check the documentation")[0]
        reason = " ".join(reason.split())[:120] or type(err).__name__
        return CheckpointError(
            f"checkpoint {path} could not be read as plain data ({reason}): the file is damaged (copy or write it "
            "again) or holds more than tensors; it was not loaded"
        )
    detail = f"{type(err).__name__}: {one_line(err)[:200]}" if str(err).strip() else type(err).__name__
    cut = ", the file ends early: a copy or download cut short?" if isinstance(err, EOFError) else ""
    return CheckpointError(f"checkpoint {path} could not be read ({detail}{cut}): copy or write it again")


def check_checkpoint_file(path: Path) -> bool:
    """A file in one of torch's formats (its first bytes), before torch reads it: a folder, a text file or a
    truncated archive is named as such, not as a checkpoint that could run code. True for the zip format."""
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a checkpoint file: {_ckpt_in(path)}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: fix ckpt_path")
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except OSError as err:
        raise CheckpointError(f"checkpoint {path} cannot be read ({err.strerror}): fix its permissions") from err
    if head.startswith(ZIP_MAGIC):
        _check_zip(path)
        return True
    if not head.startswith(PICKLE_MAGIC):
        what = "an empty file" if not head else f"it starts with {head!r}"
        raise CheckpointError(
            f"{path} is not a torch checkpoint file ({what}; torch.save writes a zip archive, older torch a "
            "pickle): fix ckpt_path, e.g. <run folder>/<category>/checkpoints/last.ckpt"
        )
    return False


def _check_zip(path: Path) -> None:
    """A zip archive torch can read: intact (a copy cut short has no central directory) and holding ``data.pkl``."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(
            f"checkpoint {path} is a damaged zip archive (it starts as one but cannot be opened: a copy or download "
            "cut short?): copy or write it again"
        ) from err
    if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        raise CheckpointError(
            f"{path} is not a torch checkpoint file (a zip archive without torch's data.pkl): fix ckpt_path"
        )


def _ckpt_in(folder: Path) -> str:
    """The fix for a folder given as a checkpoint: one of its ``*.ckpt`` files (a ``last.ckpt`` nearest the top)."""
    found = {p for pattern in CKPT_PLACES for p in folder.glob(pattern) if p.is_file()}
    found = sorted(found, key=lambda p: (p.name != "last.ckpt", len(p.parts), str(p)))
    if not found:
        return "it holds no .ckpt file; set ckpt_path to a checkpoint file (a run writes <category>/checkpoints/*.ckpt)"
    more = f" ({len(found)} .ckpt files there)" if len(found) > 1 else ""
    return f"set ckpt_path to a checkpoint file in it, e.g. {found[0]}{more}"


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
    """The fitted :class:`~fod_lightning.training.fod_module.FODLitModule` of a checkpoint, in eval mode: its net,
    data contract (``.contract``), what it was fitted on (``.fitted_on``) and thresholds (``.thresholds``).

    ``image_score, anomaly_map = model.net.score_images(images)`` scores images normalised per the contract.
    """
    from fod_lightning.training.fod_module import FODLitModule

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
