"""A second anomaly model in a few lines: the distance of each pixel to the mean normal image. It proves that a
model added as a torch model, a LightningModule and a Hydra ``model/`` config (``helpers/conf/model/mean_image.yaml``)
goes through run, predict and export without changes to the engine, predict or export."""

import torch

from fod_lightning.models.base import AnomalyNet
from fod_lightning.training.statistics import StatisticsModule


class MeanImageNet(AnomalyNet):
    """anomaly_map: squared distance to the mean normal image, averaged over channels; image_score: its maximum."""

    def __init__(self, image_size: int) -> None:
        super().__init__()
        self.config = {"image_size": int(image_size)}
        self.register_buffer("mean_image", torch.zeros(3, image_size, image_size))

    def score_images(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        anomaly_map = ((images - self.mean_image) ** 2).mean(dim=1)  # (B, H, W)
        return anomaly_map.flatten(1).amax(dim=1), anomaly_map


class MeanImageModule(StatisticsModule):
    """Fitted from the mean of the normal training images; nothing to optimise."""

    net_class = MeanImageNet

    def fit(self, images) -> None:
        self.net.mean_image.copy_(torch.cat(list(images)).mean(dim=0))
