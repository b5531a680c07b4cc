"""One loader for every kind of checkpoint, every command: read safely and once, rebuild, refuse mismatched use.

A file is read once (``torch.load(weights_only=True)``: nothing is unpickled beyond tensors and plain containers).
The readers of foreign formats that model slices register (:mod:`fod_lightning.training.plugins`; FOD's: the authors'
files) are asked whether they recognise its contents; otherwise it is a Lightning checkpoint of an
:class:`~fod_lightning.training.module.AnomalyModule`, parsed into one
:class:`~fod_lightning.training.checkpoint_format.CheckpointRecord` (its format: that module). ``run``, ``predict``,
``export`` and :func:`fod_lightning.load` share :func:`load_model`; the commands share :func:`fitted_model`.
"""

import pickle
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from fod_lightning.data.unified import UNIFIED
from fod_lightning.errors import CheckpointError, ConfigError, one_line
from fod_lightning.training.checkpoint_format import CheckpointRecord
from fod_lightning.training.module import module_class
from fod_lightning.training.plugins import CheckpointReader, ReaderSettings, reader_named, readers

ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since torch 1.6
PICKLE_MAGIC = b"\x80"  # a pickle of protocol >= 2: torch's legacy format
WEIGHTS_ONLY_REFUSAL = "Weights only load failed"  # how torch.load(weights_only=True) words its refusals
CKPT_PLACES = ("*.ckpt", "checkpoints/*.ckpt", "*/checkpoints/*.ckpt", "*/*/checkpoints/*.ckpt")  # run, multirun


def read_file(path: str | Path) -> object:
    """The contents of a checkpoint file of any format, loaded once, without executing code from the file."""
    path = Path(path).expanduser()
    zipped = check_checkpoint_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)  # mmap: zip format only
    except Exception as err:
        raise load_error(path, err) from err


def read_record(path: str | Path) -> CheckpointRecord:
    """The record of a Lightning checkpoint of this project (what resuming and the engine read), the file read once."""
    path = Path(path).expanduser()
    contents = read_file(path)
    if (reader := recognising_reader(contents, path)) is not None:
        raise CheckpointError(f"{path} is {reader.what}: it can be evaluated (train=false), predicted with and "
                              "exported, not resumed")  # fmt: skip
    return CheckpointRecord.of(contents, path)


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


def recognising_reader(contents: object, path: Path) -> CheckpointReader | None:
    """The registered reader of a foreign format that recognises the file's contents, if any."""
    return next((r for r in readers() if r.recognises(contents, path)), None)


def load_model(
    path: str | Path,
    build: Callable[[], object] | None = None,
    reader: Mapping | None = None,
    backbone: Callable[[], object] | None = None,
    map_location: str | torch.device = "cpu",
    fits: Mapping | None = None,
):
    """The fitted :class:`~fod_lightning.training.module.AnomalyModule` of any checkpoint, in eval mode; the file is
    read once.

    Args:
        path: a Lightning checkpoint of this project, or a file of a registered foreign format (the authors' FOD
            ``<class>-img.pth`` / ``-pix.pth``).
        build: builds the module of the run's config (``run train=false``): a Lightning checkpoint's weights are
            loaded into it, so that settings of the config (metric binning, kernels) apply; it must be of the
            checkpoint's class. None: the module is rebuilt from the checkpoint alone.
        reader, backbone: what a foreign file does not say about itself: its reader's options (the ``reader`` config
            group: the authors' files take ``reference_features`` and ``resize``) and a factory of the backbone it was
            trained with (None: the reader's default). A reader named there (``reader["name"]``) must recognise the
            file.
        fits: what the model must have been fitted on (:func:`check_fits`), checked before anything is built.
    """
    path = Path(path).expanduser()
    settings = ReaderSettings(dict(reader or {}), backbone)
    contents = read_file(path)
    reader = recognising_reader(contents, path)
    chosen = settings.options.get("name")
    if chosen and (reader is None or reader.name != chosen):
        named = reader_named(chosen)
        what = named.what if named is not None else f"a format no installed reader calls {chosen!r}"
        raise CheckpointError(f"reader={chosen} reads {what}, but {path} is not one: drop reader=... for "
                              f"{'a fod_lightning checkpoint' if reader is None else reader.what}")  # fmt: skip
    if reader is not None:
        model = reader.load(contents, path, settings).to(map_location).eval()
        if fits:
            check_fits(described_model(model), path, **fits)
        return model
    record = CheckpointRecord.of(contents, path)
    if fits:
        check_fits(record.described(), path, **fits)
    if not record.module:
        raise CheckpointError(f"checkpoint {path} (format {record.format}) does not name its model class, and no "
                              "installed plugin reads it: reinstall fod_lightning (pip install -e .)")  # fmt: skip
    cls = module_class(record.module)
    if build is None:
        return cls.from_record(record).to(map_location)
    model = build()
    if not isinstance(model, cls):
        raise ConfigError(f"checkpoint {path} holds a {cls.__name__}, but the config builds a "
                          f"{type(model).__name__}: choose the model it was trained as (model=...)")  # fmt: skip
    model.load_record(record)
    return model.to(map_location).eval()


def fitted_model(path: str | Path, options: Mapping | None = None, backbone: Callable[[], object] | None = None,
                 build: Callable[[], object] | None = None, fits: Mapping | None = None,
                 allow_mismatch: bool = False):  # fmt: skip
    """The one path from a command's config to its fitted model (``run train=false``, ``predict``, ``export``).

    Args:
        path: ``ckpt_path``.
        options, backbone: the command's ``reader`` node and a factory of its ``model/net/backbone`` (None where the
            command chose none), for a foreign file.
        build: see :func:`load_model`.
        fits: ``{"category": ..., "image_size": ..., "backbone": ...}`` the model must have been fitted on (a None
            value is not checked), unless ``allow_mismatch``.
    """
    return load_model(path, build=build, reader=options, backbone=backbone, fits=None if allow_mismatch else fits)


def command_model(cfg: DictConfig):
    """The fitted module of ``ckpt_path`` for ``predict`` and ``export`` (:func:`fitted_model`): a foreign file gets
    the ``reader`` node and the backbone of ``model/net/backbone`` when chosen; with ``category``, a model fitted on
    another one is refused (unless ``allow_mismatch=true``)."""
    backbone = OmegaConf.select(cfg, "model.net.backbone")
    return fitted_model(cfg.ckpt_path, cfg.get("reader"),
                        (lambda: hydra.utils.instantiate(backbone)) if backbone is not None else None,
                        fits={"category": cfg.get("category"), "image_size": None, "backbone": None},
                        allow_mismatch=bool(cfg.get("allow_mismatch", False)))  # fmt: skip


def load(path: str | Path, map_location: str | torch.device = "cpu"):
    """The fitted model of a fod_lightning checkpoint, in eval mode: an
    :class:`~fod_lightning.training.module.AnomalyModule` with its net (``.net``), data contract (``.contract``),
    what it was fitted on (``.fitted_on``) and thresholds (``.thresholds``).

    ``image_score, anomaly_map = model.net.score_images(images)`` scores images normalised per the contract
    (``model.contract.preprocess(path)`` makes one such image from a file).
    """
    return load_model(path, map_location=map_location)


def described_model(model) -> dict:
    """What a loaded module was fitted on: category, image size, backbone name (None where unknown)."""
    return {"category": (model.fitted_on or {}).get("category"),
            "categories": (model.fitted_on or {}).get("categories"),
            "image_size": model.contract.to_dict()["image_size"] if model.contract else None,
            "backbone": (model.net.config.get("backbone") or {}).get("name")}  # fmt: skip


def resumable(path: str | Path) -> CheckpointRecord:
    """The record of a checkpoint training resumes from: a Lightning checkpoint that kept its optimizer state."""
    record = read_record(path)
    if not record.resumable:
        raise CheckpointError(
            f"checkpoint {path} holds no optimizer state (a finished run keeps its final checkpoint without it): "
            "resuming needs a run started with resumable_checkpoints=true; evaluate it with train=false, or train "
            "afresh"
        )
    return record


def check_fits(fitted: dict, path: str | Path, category: str | None, image_size: int | None,
               backbone: str | None) -> None:  # fmt: skip
    """Refuse to use a model on another category, image size or backbone than it was fitted on (``fitted``: from
    :meth:`CheckpointRecord.described` or :func:`described_model`). ``None`` skips a check. ``allow_mismatch=true`` is
    the explicit override (the caller's). A unified model (``category`` ``unified``) fits each of its ``categories``."""
    theirs = fitted.get("category")
    if theirs == UNIFIED and category not in (None, UNIFIED):
        trained = fitted.get("categories") or []
        if category not in trained:
            raise ConfigError(f"checkpoint {path} is one model for the categories {', '.join(trained)} (the unified "
                              f"setting), not trained on {category}: choose one of them, or allow_mismatch=true to use "
                              "it anyway")  # fmt: skip
        category = None  # one of its categories: fits
    elif category == UNIFIED and theirs is not None and theirs != UNIFIED:
        raise ConfigError(f"checkpoint {path} is the model of one category ({theirs}, the separate setting), not a "
                          f"unified one: evaluate it with setting=separate data.category={theirs}")  # fmt: skip
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
