"""Importing the authors' original FOD checkpoints (github xcyao00/FOD).

The authors save per category:

- ``<class>-img.pth`` / ``<class>-pix.pth``: ``{"state_dict": [stage0, stage1]}``, one state dict per stage
  (stage0 at stride 8, stage1 at stride 16) whose names are those of :class:`~fod_lightning.models.fod.model.FODStage`.
- ``<class>.pkl``: a pickled (ordered) dict of float32 numpy arrays ``layer0`` (stride 4), ``layer1``
  (stride 8), ``layer2`` (stride 16), each (C, h * w): the positional mean of the pooled training features.

Neither file holds the backbone, the image size or the transformer shape: the caller passes the backbone,
the shape is read from the tensor shapes and the image size from the reference's sequence length.
Nothing is unpickled beyond tensors, numpy arrays and plain containers.
"""

import math
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from fod_lightning.deploy.checkpoint import CheckpointError
from fod_lightning.models.backbone import FeatureExtractor
from fod_lightning.models.fod.model import FOD

if TYPE_CHECKING:
    from fod_lightning.training.fod_module import FODLitModule

SUFFIXES = ("-img.pth", "-pix.pth")  # the authors' best-image-AUROC and best-pixel-AUROC checkpoints
# Backbone stage channels at strides (8, 16) of the backbones of conf/model/net/backbone, for hints.
KNOWN_BACKBONES = {(512, 1024): "wide_resnet50_2", (72, 200): "tf_efficientnet_b6", (40, 112): "tf_efficientnet_lite0"}
EMBED = "embedding.project_embedding.project.weight"  # (D, C, 1)
SIGMA = "encoder.encode_layers.0.self_attention.sigma_projection.weight"  # (2H, D)
FC1 = "encoder.encode_layers.0.ffn.fc1.weight"  # (ratio * D, D)


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
            f"reference features {path} do not exist: give the authors' <class>.pkl as "
            "reference_features=FILE (without it, <class>.pkl beside the checkpoint is read)"
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


def read_official_state(path: str | Path) -> list[dict[str, torch.Tensor]]:
    """The per-stage state dicts of an authors' ``<class>-img.pth`` / ``<class>-pix.pth`` (loaded
    ``weights_only``: nothing but tensors and plain containers); a ``module.`` prefix is stripped."""
    path = Path(path).expanduser()
    expected = "the authors' {'state_dict': [stage0_state_dict, stage1_state_dict]}"
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: pass the authors' <class>-img.pth or <class>-pix.pth")
    try:
        obj = _torch_load(path)
    except Exception as err:
        raise CheckpointError(
            f"checkpoint {path} is not a plain tensor file ({type(err).__name__}): not loaded, since that could "
            f"run code from the file; expected {expected}"
        ) from err
    states = obj.get("state_dict") if isinstance(obj, dict) else None
    if not (
        isinstance(states, list | tuple)
        and states
        and all(isinstance(s, dict) and s and all(isinstance(t, torch.Tensor) for t in s.values()) for s in states)
    ):
        raise CheckpointError(f"checkpoint {path} is not an authors' FOD checkpoint: expected {expected}")
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


def official_net_config(states: list[dict[str, torch.Tensor]], backbone: FeatureExtractor, path: str = "") -> dict:
    """The :attr:`FOD.config` of the authors' per-stage state dicts on ``backbone``, read from tensor shapes:
    widths from the embedding (D, C, 1), heads from the sigma head (2H, D), depth from the layer count,
    FFN ratio from fc1 (ratio * D, D), the inter branch from ``ref_embedding``."""
    where = f"checkpoint {path}" if path else "checkpoint"
    if len(states) != len(backbone.channels):
        raise CheckpointError(
            f"{where} has {len(states)} stages, but model/net/backbone={backbone.name} gives "
            f"{len(backbone.channels)} (strides {list(backbone.strides)})"
        )
    shapes = []  # (heads, depth, FFN ratio, inter branch) per stage
    for i, state in enumerate(states):
        missing = [k for k in (EMBED, SIGMA, FC1) if k not in state]
        if missing:
            raise CheckpointError(f"{where} stage {i} has no {missing[0]}: not an authors' FOD stage")
        d_model, channels = state[EMBED].shape[:2]
        if channels != backbone.channels[i]:
            theirs = tuple(int(s[EMBED].shape[1]) for s in states)
            hint = KNOWN_BACKBONES.get(theirs)
            hint = f"e.g. model/net/backbone={hint}" if hint else f"one with {list(theirs)} channels"
            raise CheckpointError(
                f"{where} stage {i} expects {channels} backbone channels, but model/net/backbone={backbone.name} "
                f"gives {backbone.channels[i]} at stride {backbone.strides[i]}: pass the backbone it was trained "
                f"with, {hint}"
            )
        layers = {int(k.split(".")[2]) for k in state if k.startswith("encoder.encode_layers.")}
        ffn_hidden = state[FC1].shape[0]
        if ffn_hidden % d_model:
            raise CheckpointError(f"{where} stage {i}: FFN width {ffn_hidden} is not a multiple of d_model {d_model}")
        with_inter = any(k.startswith("ref_embedding.") for k in state)
        shapes.append((state[SIGMA].shape[0] // 2, len(layers), ffn_hidden // d_model, with_inter))
    if len(set(shapes)) != 1:
        raise CheckpointError(f"{where}: stages differ in (heads, depth, FFN ratio, inter branch): {shapes}")
    n_heads, depth, ffn_ratio, with_inter = shapes[0]
    return {"backbone": backbone.config, "d_models": [int(s[EMBED].shape[0]) for s in states],
            "n_heads": n_heads, "depth": depth, "ffn_ratio": ffn_ratio, "dropout": 0.0, "with_intra": True,
            "with_inter": with_inter, "attention_out_proj": False, "score": "auto", "blur_sigma": 4.0,
            "block_elements": None, "compile_correlation": False}  # fmt: skip


def _reference_maps(arrays: dict[str, np.ndarray], net: FOD, path: Path) -> tuple[list[torch.Tensor], int]:
    """Each stage's reference (C, h, w) from the pickle's ``layer{log2(stride) - 2}`` (the authors'
    mapping 4096 -> layer0, 1024 -> layer1, 256 -> layer2 at 256 px), and the image size they imply."""
    maps, sizes = [], []
    for i, (stride, channels) in enumerate(zip(net.backbone.strides, net.backbone.channels)):
        key = f"layer{int(math.log2(stride)) - 2}"
        if key not in arrays:
            raise CheckpointError(f"reference features {path} have no {key} (stride {stride}); found {sorted(arrays)}")
        ref = arrays[key]  # (C, L)
        side = math.isqrt(ref.shape[1])
        if ref.shape[0] != channels or side * side != ref.shape[1]:
            raise CheckpointError(
                f"reference features {path}: {key} is {ref.shape}, not ({channels}, h*w) of a square grid of "
                f"stage {i}'s backbone channels"
            )
        maps.append(torch.from_numpy(np.ascontiguousarray(ref, dtype=np.float32)).view(channels, side, side))
        sizes.append(side * stride)
    if len(set(sizes)) != 1:
        raise CheckpointError(f"reference features {path} imply different image sizes per stage: {sizes}")
    return maps, sizes[0]


def _load_stage(stage: torch.nn.Module, state: dict[str, torch.Tensor], i: int, path: Path) -> None:
    own = stage.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"checkpoint {path} stage {i} does not fit an FOD stage: missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}, other shapes {wrong[:3]}"
        )
    stage.load_state_dict(state, strict=True)


def load_official(
    ckpt_path: str | Path, reference_path: str | Path | None, backbone: FeatureExtractor, resize: str = "square"
) -> "FODLitModule":
    """An authors' checkpoint as a :class:`~fod_lightning.training.fod_module.FODLitModule` in eval mode (on CPU).

    Args:
        ckpt_path: ``<class>-img.pth`` or ``<class>-pix.pth``.
        reference_path: the authors' ``<class>.pkl`` (None: ``<class>.pkl`` beside the checkpoint).
        backbone: the backbone the checkpoint was trained with (built from ``model/net/backbone``).
        resize: how images are brought to the square input size (the authors: ``square``).

    Returns:
        The module, with ``.contract`` (image size read from the reference), ``.fitted_on`` (category from
        the file name) and ``.thresholds`` None. ``model.net.score_images(images)`` scores images.
    """
    from fod_lightning.training.fod_module import FODLitModule

    ckpt_path = Path(ckpt_path).expanduser()
    category = _category(ckpt_path)
    reference_path = Path(reference_path).expanduser() if reference_path else ckpt_path.parent / f"{category}.pkl"
    states = read_official_state(ckpt_path)
    config = official_net_config(states, backbone, str(ckpt_path))
    net = FOD(backbone, **{k: v for k, v in config.items() if k != "backbone"})
    for i, (stage, state) in enumerate(zip(net.stages, states)):
        _load_stage(stage, state, i, ckpt_path)
    maps, image_size = _reference_maps(read_reference_pickle(reference_path), net, reference_path)
    net.reference.set(maps)
    model = FODLitModule(net=net)
    model.contract = {
        "image_size": image_size,
        "resize": resize,
        "mean": list(backbone.mean),
        "std": list(backbone.std),
    }
    model.fitted_on = {"benchmark": "authors' checkpoint", "category": category, "root": str(ckpt_path.parent)}
    model.thresholds = None
    return model.eval()
