"""Importing the authors' original FOD checkpoints (github xcyao00/FOD).

The authors save per category:

- ``<class>-img.pth`` / ``<class>-pix.pth``: ``{"state_dict": [stage0, stage1]}``, one state dict per stage
  (stage0 at stride 8, stage1 at stride 16) whose names are those of :class:`~fod_lightning.models.fod.model.FODStage`.
- ``<class>.pkl``: a pickled (ordered) dict of float32 numpy arrays ``layer0`` (stride 4), ``layer1``
  (stride 8), ``layer2`` (stride 16), each (C, h * w): the positional mean of the pooled training features.

Neither file holds the backbone, the image size or the transformer shape: the caller passes the backbone,
the shape is read from the tensor shapes and the image size from the reference's sequence length.
Nothing is unpickled beyond tensors, numpy arrays and plain containers.

:class:`AuthorsFilesReader` is registered with the checkpoint loader (:mod:`fod_lightning.training.plugins`), so that
``run train=false``, ``predict``, ``export`` and :func:`fod_lightning.load_model` take these files as any other.
"""

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from fod_lightning.data.contract import DataContract
from fod_lightning.errors import CheckpointError
from fod_lightning.models.backbone import FeatureExtractor
from fod_lightning.models.fod.authors import EMBED, load_stage, official_net_config, reference_maps
from fod_lightning.models.fod.model import FOD
from fod_lightning.training.fod.module import FODLitModule
from fod_lightning.training.plugins import CheckpointReader, ReaderSettings
from fod_lightning.utils.config_dir import CONFIG_DIR

SUFFIXES = ("-img.pth", "-pix.pth")  # the authors' best-image-AUROC and best-pixel-AUROC checkpoints


def _numpy_globals() -> dict[tuple[str, str], object]:
    """The globals a pickled numpy array (numpy 1.x or 2.x, any protocol) or OrderedDict refers to."""
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric
    import _codecs  # protocols 0-2 pickle bytes as _codecs.encode(str, "latin1")

    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
               ("collections", "OrderedDict"): OrderedDict, ("_codecs", "encode"): _codecs.encode}  # fmt: skip
    for package in ("numpy.core", "numpy._core"):  # the authors pickled with numpy 1.x (numpy.core)
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer  # protocol 5
    return allowed


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers only; any other global is refused, never imported."""

    def __init__(self, file, path: Path) -> None:
        super().__init__(file)
        self.path = path
        self.allowed = _numpy_globals()

    def find_class(self, module: str, name: str):
        if (module, name) not in self.allowed:
            raise CheckpointError(
                f"reference features {self.path} refer to {module}.{name}, which is not a numpy array or plain "
                "container: not loaded (loading could run code)"
            )
        return self.allowed[(module, name)]


def read_reference_pickle(path: str | Path) -> dict[str, np.ndarray]:
    """The authors' ``<class>.pkl``: ``{"layer0": (C0, L0), "layer1": (C1, L1), ...}`` float arrays,
    unpickled with an allow-list (numpy arrays, dicts, lists, numbers, strings)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"reference features {path} do not exist: give the authors' <class>.pkl as reader=fod_authors "
            "reader.reference_features=FILE (without it, <class>.pkl beside the checkpoint is read)"
        )
    try:
        with path.open("rb") as file:
            obj = _ArrayUnpickler(file, path).load()
    except CheckpointError:
        raise
    except Exception as err:
        raise CheckpointError(f"reference features {path} are not a readable pickle ({type(err).__name__})") from err
    if not isinstance(obj, dict):
        raise CheckpointError(f"reference features {path} hold a {type(obj).__name__}, not a dict of layer arrays")
    for key, value in obj.items():
        if not (isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.ndim == 2):
            what = (
                f"{value.dtype} array of shape {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__
            )
            raise CheckpointError(f"reference features {path}: {key!r} is a {what}, not a float (C, h*w) array")
    return dict(obj)


def _torch_load(path: Path):
    # mmap (zip archives only) keeps the layout check cheap: tensors are read when used
    return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))


EXPECTED = "the authors' {'state_dict': [stage0_state_dict, stage1_state_dict]}"


def read_official_state(path: str | Path) -> list[dict[str, torch.Tensor]]:
    """The per-stage state dicts of an authors' ``<class>-img.pth`` / ``<class>-pix.pth`` (loaded
    ``weights_only``: nothing but tensors and plain containers); a ``module.`` prefix is stripped."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: pass the authors' <class>-img.pth or <class>-pix.pth")
    try:
        obj = _torch_load(path)
    except Exception as err:
        raise CheckpointError(
            f"checkpoint {path} is not a plain tensor file ({type(err).__name__}): not loaded, since that could "
            f"run code from the file; expected {EXPECTED}"
        ) from err
    return official_states(obj, path)


def official_states(contents: object, path: Path) -> list[dict[str, torch.Tensor]]:
    """The per-stage state dicts of an authors' file already loaded (``weights_only``), or a refusal naming it."""
    states = contents.get("state_dict") if isinstance(contents, dict) else None
    if not (
        isinstance(states, list | tuple)
        and states
        and all(isinstance(s, dict) and s and all(isinstance(t, torch.Tensor) for t in s.values()) for s in states)
    ):
        raise CheckpointError(f"checkpoint {path} is not an authors' FOD checkpoint: expected {EXPECTED}")
    return [{k.removeprefix("module."): v for k, v in s.items()} for s in states]


def is_official_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is an authors' checkpoint (a list of per-stage state dicts under ``state_dict``,
    unlike a Lightning checkpoint's single dict). Reads the layout only; never raises."""
    try:
        states = read_official_state(path)
    except CheckpointError:
        return False
    return all(EMBED in s for s in states)


def _category(path: Path) -> str:
    """``bottle-pix.pth`` -> ``bottle``."""
    name = path.name
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return path.stem


def load_official(
    ckpt_path: str | Path,
    reference_path: str | Path | None,
    backbone: FeatureExtractor,
    resize: str = "square",
    states: list[dict[str, torch.Tensor]] | None = None,
) -> FODLitModule:
    """An authors' checkpoint as a :class:`~fod_lightning.training.fod.module.FODLitModule` in eval mode (on CPU).

    Args:
        ckpt_path: ``<class>-img.pth`` or ``<class>-pix.pth``.
        reference_path: the authors' ``<class>.pkl`` (None: ``<class>.pkl`` beside the checkpoint).
        backbone: the backbone the checkpoint was trained with (built from ``model/net/backbone``).
        resize: how images are brought to the square input size (the authors: ``square``).
        states: the file's per-stage state dicts when it was read already (:func:`official_states`).

    Returns:
        The module, with ``.contract`` (image size read from the reference), ``.fitted_on`` (category from
        the file name) and no calibrated thresholds. ``model.net.score_images(images)`` scores images.
    """
    ckpt_path = Path(ckpt_path).expanduser()
    category = _category(ckpt_path)
    reference_path = Path(reference_path).expanduser() if reference_path else ckpt_path.parent / f"{category}.pkl"
    states = read_official_state(ckpt_path) if states is None else states
    config = official_net_config(states, backbone, str(ckpt_path))
    net = FOD(backbone, **{k: v for k, v in config.items() if k != "backbone"})
    for i, (stage, state) in enumerate(zip(net.stages, states)):
        load_stage(stage, state, i, ckpt_path)
    maps, image_size = reference_maps(read_reference_pickle(reference_path), net, reference_path)
    net.reference.set(maps)
    contract = DataContract(image_size, resize, backbone.mean, backbone.std)
    fitted_on = {"benchmark": "authors' checkpoint", "category": category, "root": str(ckpt_path.parent)}
    return FODLitModule(net=net, contract=contract, fitted_on=fitted_on).eval()


AUTHORS_BACKBONE = Path(CONFIG_DIR) / "model" / "net" / "backbone" / "wide_resnet50_2.yaml"


class AuthorsFilesReader(CheckpointReader):
    """The authors' files as a checkpoint format of the loader."""

    name = "fod_authors"
    what = "the authors' FOD files (<class>-img.pth or <class>-pix.pth, with their <class>.pkl)"
    needs = (
        "model/net/backbone (default wide_resnet50_2, the authors')",
        "reader.reference_features (default: <class>.pkl beside the checkpoint)",
        "reader.resize (default square; BTAD and MVTec 3D-AD: shorter_side_crop)",
    )

    def recognises(self, contents: object, path: Path) -> bool:
        try:
            return all(EMBED in s for s in official_states(contents, path))
        except CheckpointError:
            return False

    def load(self, contents: object, path: Path, settings: ReaderSettings) -> FODLitModule:
        backbone = settings.backbone() if settings.backbone is not None else authors_backbone()
        options = settings.options or {}
        return load_official(path, options.get("reference_features"), backbone, options.get("resize") or "square",
                             official_states(contents, path))  # fmt: skip


def authors_backbone() -> FeatureExtractor:
    """The backbone of the authors' files when the command names none: theirs (``wide_resnet50_2``)."""
    from omegaconf import OmegaConf

    config = OmegaConf.to_container(OmegaConf.load(AUTHORS_BACKBONE))
    config.pop("_target_")
    return FeatureExtractor(**config)
