"""The authors' checkpoint layout (github xcyao00/FOD) as this FOD: pure functions from their per-stage state dicts
and reference arrays to :class:`~fod_lightning.models.fod.model.FOD`'s config, stages and reference features.

Reading their files (safely) is :mod:`fod_lightning.training.fod.authors_files`.
"""

import math

import numpy as np
import torch

from fod_lightning.errors import CheckpointError
from fod_lightning.models.backbone import FeatureExtractor
from fod_lightning.models.fod.model import FOD

# Backbone stage channels at strides (8, 16) of the backbones of conf/model/net/backbone, for hints.
KNOWN_BACKBONES = {(512, 1024): "wide_resnet50_2", (72, 200): "tf_efficientnet_b6", (40, 112): "tf_efficientnet_lite0"}
EMBED = "embedding.project_embedding.project.weight"  # (D, C, 1)
SIGMA = "encoder.encode_layers.0.self_attention.sigma_projection.weight"  # (2H, D)
FC1 = "encoder.encode_layers.0.ffn.fc1.weight"  # (ratio * D, D)


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


def reference_maps(arrays: dict[str, np.ndarray], net: FOD, path: object) -> tuple[list[torch.Tensor], int]:
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


def load_stage(stage: torch.nn.Module, state: dict[str, torch.Tensor], i: int, path: object) -> None:
    own = stage.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"checkpoint {path} stage {i} does not fit an FOD stage: missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}, other shapes {wrong[:3]}"
        )
    stage.load_state_dict(state, strict=True)
