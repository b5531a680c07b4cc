"""Where FOD's detection comes from, epoch by epoch: each branch's score (reconstruction, intra, inter) of each stage
on its own, measured on the validation split (``model.branch_analysis=true``; a study tool, off by default)."""

import torch
import torch.distributed as dist
from torch import nn
from torchmetrics.classification import BinaryAUROC

from fod_lightning.models.fod.encoder import BRANCHES
from fod_lightning.models.fod.model import FOD
from fod_lightning.models.fod.scoring import anomaly_map, image_scores, patch_scores

SCORES = ("rec", "intra", "inter")


class BranchAnalysis(nn.Module):
    """Per stage and per score (``rec``: s_rec alone, ``intra``/``inter``: s_rec times the branch term, as the
    authors' scores): the image AUROC of that map alone, and the mean image score of the normal and of the
    anomalous validation images (``val_branch/stage<i>/<score>/{image_auroc,normal_mean,anomalous_mean}``)."""

    def __init__(self, n_stages: int) -> None:
        super().__init__()
        self.keys = [f"stage{i}/{s}" for i in range(n_stages) for s in SCORES]
        self.auroc = nn.ModuleDict({k.replace("/", "_"): BinaryAUROC(normalization=None) for k in self.keys})
        self.sums: dict[str, torch.Tensor] = {}

    def update(self, net: FOD, images: torch.Tensor, labels: torch.Tensor) -> None:
        outputs = net.forward(images, BRANCHES)
        size = tuple(images.shape[-2:])
        for i, out in enumerate(outputs):
            for score in SCORES:
                if (score == "intra" and not out.intra.layers) or (score == "inter" and not out.inter.layers):
                    continue
                patches = patch_scores(score, out.reconstruction, out.tokens, out.intra, out.inter).float()
                scores = image_scores(anomaly_map([patches.view(-1, *out.grid)], size), net.blur_sigma)
                key = f"stage{i}/{score}"
                self.auroc[key.replace("/", "_")].update(scores, labels)
                sums = self.sums.setdefault(key, torch.zeros(4, dtype=torch.float64, device=scores.device))
                sums += torch.stack([scores[labels == 0].sum(), (labels == 0).sum(), scores[labels == 1].sum(),
                                     (labels == 1).sum()]).double()  # fmt: skip

    def compute(self) -> dict[str, float]:
        """The epoch's values (over all processes), then a reset."""
        values = {}
        for key, sums in self.sums.items():
            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(sums)
            values[f"val_branch/{key}/image_auroc"] = float(self.auroc[key.replace("/", "_")].compute())
            values[f"val_branch/{key}/normal_mean"] = float(sums[0] / sums[1].clamp_min(1))
            values[f"val_branch/{key}/anomalous_mean"] = float(sums[2] / sums[3].clamp_min(1))
        for metric in self.auroc.values():
            metric.reset()
        self.sums = {}
        return values
