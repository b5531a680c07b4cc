"""One loader for every kind of checkpoint, every command: read safely, rebuild, refuse mismatched use.

Two kinds of file: a Lightning checkpoint written by any :class:`~fod_lightning.training.module.AnomalyModule`,
and the authors' ``<class>-img.pth`` / ``-pix.pth`` with their ``<class>.pkl`` (:mod:`fod_lightning.deploy.authors`).
:func:`checkpoint_kind` tells them apart, once, for ``run``, ``predict``, ``export`` and :func:`fod_lightning.load`.

A Lightning checkpoint holds, besides the weights and what the model fitted (reference features, memory banks):
``hyper_parameters["net"]`` (the net's config), and ``fod`` = ``{"module": its class, "contract": the data
contract, "fitted_on": benchmark, category, root; "thresholds": ...}`` (format 1, before the module was named,
is FOD's). Nothing is unpickled beyond tensors and plain containers (``torch.load(weights_only=True)``).
"""

import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch

from fod_lightning.deploy.authors import is_official_checkpoint, load_official
from fod_lightning.errors import CheckpointError, ConfigError, one_line
from fod_lightning.training.module import module_class

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


KINDS = ("lightning", "authors")


def checkpoint_kind(path: str | Path) -> str:
    """``authors`` for the authors' per-stage ``.pth`` (a list of state dicts under ``state_dict``), else
    ``lightning`` (read and checked when loaded)."""
    return "authors" if Path(path).expanduser().is_file() and is_official_checkpoint(path) else "lightning"


def module_class_of(checkpoint: dict, path: str | Path) -> type:
    """The AnomalyModule class a Lightning checkpoint rebuilds: the one it names, FOD's for format 1."""
    meta = checkpoint.get("fod") or {}
    net = (checkpoint.get("hyper_parameters") or {}).get("net")
    if not isinstance(net, dict) or not meta.get("contract"):
        raise CheckpointError(
            f"checkpoint {path} does not describe its model (written by an older fod_lightning or another "
            "tool): evaluate it with `python -m fod_lightning.run train=false ckpt_path=...` and its training config"
        )
    return module_class(meta.get("module") or "fod_lightning.training.fod_module.FODLitModule")


def load_model(
    path: str | Path,
    build: Callable[[], object] | None = None,
    reference_features: str | Path | None = None,
    backbone: Callable[[], object] | None = None,
    resize: str = "square",
    map_location: str | torch.device = "cpu",
):
    """The fitted :class:`~fod_lightning.training.module.AnomalyModule` of any checkpoint, in eval mode.

    Args:
        path: a Lightning checkpoint, or an authors' ``<class>-img.pth`` / ``-pix.pth``.
        build: builds the module of the run's config (``run train=false``): the checkpoint's weights are loaded
            into it, so that settings of the config (metric binning, kernels) apply; it must be of the
            checkpoint's class. None: the module is rebuilt from the checkpoint alone.
        reference_features, backbone, resize: for the authors' files only: their ``<class>.pkl`` (None: beside the
            checkpoint), a factory of the backbone they were trained with, and the resize rule.
    """
    path = Path(path).expanduser()
    if checkpoint_kind(path) == "authors":
        if backbone is None:
            raise ConfigError(f"{path} is an authors' checkpoint: it needs the backbone it was trained with")
        return load_official(path, reference_features, backbone(), resize=resize)
    checkpoint = read_checkpoint(path)
    if build is None:
        cls = module_class_of(checkpoint, path)
        return cls.load_from_checkpoint(path, map_location=map_location, weights_only=True,
                                        **backbone_from_file(checkpoint)).eval()  # fmt: skip
    model = build()
    if checkpoint.get("fod"):
        cls = module_class_of(checkpoint, path)
        if not isinstance(model, cls):
            raise ConfigError(f"checkpoint {path} holds a {cls.__name__}, but the config builds a "
                              f"{type(model).__name__}: choose the model it was trained as (model=...)")  # fmt: skip
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(checkpoint["state_dict"], strict=True)
    return model.to(map_location).eval()


def backbone_from_file(checkpoint: dict) -> dict:
    """When the checkpoint holds the backbone's weights (saved with ``model.save_backbone=true``, or before lean
    checkpoints): the net's config with the backbone built without weights, since the state dict brings them (no
    download, no weights file needed). Empty otherwise: the config's weights load and their fingerprint is checked."""
    net = (checkpoint.get("hyper_parameters") or {}).get("net") or {}
    backbone = (checkpoint.get("fod") or {}).get("backbone") or {"in_checkpoint": True}
    if not isinstance(net.get("backbone"), dict) or not backbone.get("in_checkpoint"):
        return {}
    return {"net": {**net, "backbone": {**net["backbone"], "weights": "random", "checkpoint_path": None}}}


def load(path: str | Path, map_location: str | torch.device = "cpu"):
    """The fitted model of a fod_lightning checkpoint, in eval mode: an
    :class:`~fod_lightning.training.module.AnomalyModule` with its net (``.net``), data contract (``.contract``),
    what it was fitted on (``.fitted_on``) and thresholds (``.thresholds``).

    ``image_score, anomaly_map = model.net.score_images(images)`` scores images normalised per the contract
    (``model.contract.preprocess(path)`` makes one such image from a file).
    """
    return load_model(path, map_location=map_location)


def described(checkpoint: dict) -> dict:
    """What a Lightning checkpoint was fitted on: category, image size, backbone name (None where unknown)."""
    meta = checkpoint.get("fod") or {}
    net = (checkpoint.get("hyper_parameters") or {}).get("net") or {}
    return {"category": (meta.get("fitted_on") or {}).get("category"),
            "image_size": (meta.get("contract") or {}).get("image_size"),
            "backbone": (net.get("backbone") or {}).get("name")}  # fmt: skip


def described_model(model) -> dict:
    """:func:`described` of a loaded module."""
    return {"category": (model.fitted_on or {}).get("category"),
            "image_size": model.contract.image_size if model.contract else None,
            "backbone": (model.net.config.get("backbone") or {}).get("name")}  # fmt: skip


def resumable(path: str | Path) -> dict:
    """:func:`described` of a checkpoint training resumes from; the authors' files cannot be resumed."""
    if checkpoint_kind(path) == "authors":
        raise ConfigError(f"{path} is an authors' checkpoint: it can be evaluated (train=false), not resumed")
    return described(read_checkpoint(path))


def check_fits(fitted: dict, path: str | Path, category: str | None, image_size: int | None,
               backbone: str | None) -> None:  # fmt: skip
    """Refuse to use a model on another category, image size or backbone than it was fitted on (``fitted``: from
    :func:`described`). ``None`` skips a check. ``allow_mismatch=true`` is the explicit override (the caller's)."""
    pairs = [
        ("category", fitted.get("category"), category, "data.category"),
        ("image size", fitted.get("image_size"), image_size, "data.image_size"),
        ("backbone", fitted.get("backbone"), backbone, "model/net/backbone"),
    ]
    for what, theirs, ours, key in pairs:
        if ours is not None and theirs is not None and str(theirs) != str(ours):
            raise ConfigError(
                f"checkpoint {path} was fitted on {what} {theirs}, not {ours}: set {key} to match, or "
                "allow_mismatch=true to use it anyway"
            )
