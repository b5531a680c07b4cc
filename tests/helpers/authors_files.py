"""The authors' checkpoint files (github xcyao00/FOD) written from a model of ours, in their exact layout."""

import pickle
from collections import OrderedDict

import numpy as np
import torch

from fod_lightning.models.fod.model import FOD

SIZE = 64


def authors_like_fod(backbone) -> FOD:
    """A tiny FOD with perturbed weights (LayerNorms not at their defaults) and a reference of random images."""
    torch.manual_seed(0)
    net = FOD(backbone, d_models=(16, 32), n_heads=2, depth=2).eval()
    with torch.no_grad():
        for p in net.stages.parameters():
            p.add_(0.05 * torch.randn_like(p))
        net.reference.set([m.mean(0) for m in net.pooled_features(torch.randn(4, 3, SIZE, SIZE))])
    return net


def save_authors_files(net: FOD, directory, category="bottle", protocol=4):
    """The authors' files: ``<class>-pix.pth`` (per-stage state dicts) and ``<class>.pkl`` (numpy (C, h*w))."""
    ckpt = directory / f"{category}-pix.pth"
    torch.save({"state_dict": [s.state_dict() for s in net.stages]}, ckpt)
    stride4 = np.random.default_rng(0).standard_normal((24, (SIZE // 4) ** 2)).astype(np.float32)
    layers = [stride4] + [net.reference.get(i).flatten(1).numpy() for i in range(2)]
    with (directory / f"{category}.pkl").open("wb") as f:
        pickle.dump(OrderedDict((f"layer{i}", a) for i, a in enumerate(layers)), f, protocol=protocol)
    return ckpt
