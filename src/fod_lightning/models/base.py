"""What every anomaly model is, in pure torch: normalised images in, image scores and anomaly maps out."""

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from fod_lightning.models.backbone import FeatureExtractor


@dataclass
class AnomalyPrediction:
    """anomaly_map (B, H, W) at the input size; image_score (B,)."""

    anomaly_map: torch.Tensor
    image_score: torch.Tensor


class FittedBuffers(nn.Module):
    """A module whose fitted buffers (reference features, a memory bank, Gaussians) take the shape of the saved ones
    when a state dict is loaded (they start empty: their size depends on the data)."""

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name, buffer in self._buffers.items():
            key = prefix + name
            if buffer is not None and key in state_dict and buffer.shape != state_dict[key].shape:
                self._buffers[name] = torch.empty_like(state_dict[key], device=buffer.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class AnomalyNet(FittedBuffers):
    """Base of the pure torch anomaly models (FOD, PatchCore, PaDiM, ...).

    A subclass implements :meth:`score_images`, the one scoring path that evaluation, ``predict`` and the exported
    ONNX model all call, and keeps in ``config`` the plain-typed arguments that rebuild it (:meth:`from_config`):
    checkpoints store that config beside the weights. Anything it fits from data (reference features, a memory
    bank, Gaussians) lives in buffers, so that the state dict carries it (:class:`FittedBuffers`).
    """

    config: dict

    @classmethod
    def from_config(cls, config: dict) -> "AnomalyNet":
        """The model ``config`` describes, without fitted state (the caller loads a state dict next); a ``backbone``
        entry is built as the :class:`~fod_lightning.models.backbone.FeatureExtractor` it describes, weights
        included (``weights: random`` when the state dict will bring them)."""
        config = dict(config)
        if isinstance(config.get("backbone"), Mapping):
            config["backbone"] = FeatureExtractor(**config["backbone"])
        return cls(**config)

    def score_images(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised images (B, 3, H, W) -> (image_score (B,), anomaly_map (B, H, W))."""
        raise NotImplementedError(f"{type(self).__name__} does not implement score_images")

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> AnomalyPrediction:
        """:meth:`score_images` without gradients, as an :class:`AnomalyPrediction`."""
        image_score, anomaly_map = self.score_images(images)
        return AnomalyPrediction(anomaly_map, image_score)

    @property
    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """The (mean, std) the model's input must be normalised with (its backbone's), or None if any will do."""
        backbone = getattr(self, "backbone", None)
        if backbone is None or not hasattr(backbone, "mean"):
            return None
        return tuple(backbone.mean), tuple(backbone.std)

    def export_mode(self, example: torch.Tensor | None = None) -> AbstractContextManager:
        """A context in which :meth:`score_images` uses only operations the ONNX exporter can trace; ``example``
        (B, 3, H, W) is the input the export traces with (a model may prepare constants of its shape)."""
        return nullcontext()
