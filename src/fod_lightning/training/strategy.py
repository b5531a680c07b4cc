"""DDP for every model: a model fitted from statistics (no trainable parameter) runs unwrapped in each process."""

import logging

from lightning.pytorch.strategies import DDPStrategy as LightningDDPStrategy

log = logging.getLogger(__name__)


class DDPStrategy(LightningDDPStrategy):
    """Lightning's DDP, except that a model with no parameter to train (PatchCore, PaDiM) is not wrapped in
    ``DistributedDataParallel`` (torch refuses to): each process fits it alone on every training image (see
    :class:`~fod_lightning.training.statistics.StatisticsModule`) and scores its share of the evaluation images,
    whose metrics are synchronised as for trained models."""

    def configure_ddp(self) -> None:
        if any(p.requires_grad for p in self.model.parameters()):
            super().configure_ddp()
        else:
            log.debug("no trainable parameter: the model is not wrapped in DistributedDataParallel")
