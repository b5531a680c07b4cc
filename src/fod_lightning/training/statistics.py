"""Models fitted from statistics of the normal images (memory banks, Gaussians): no optimizer, one pass."""

from collections.abc import Iterator

import torch

from fod_lightning.data.batch import Batch
from fod_lightning.training.module import AnomalyModule


class StatisticsModule(AnomalyModule):
    """Base of models that are fitted, not trained. Before the first step, :meth:`fit` receives every normal
    training image once, in order and unsharded (the reference split: under DDP every process fits the same model
    on all of them), as batches of normalised images. Then one training step is counted, so that validation,
    logging and the epoch's checkpoints run as for trained models, and the fit stops, whatever
    ``trainer.max_epochs`` says. Training augmentations do not apply: the reference split is never augmented."""

    def fit(self, images: Iterator[torch.Tensor]) -> None:
        """Fit the net from batches (B, 3, H, W) of normalised normal images."""
        raise NotImplementedError(f"{type(self).__name__} does not implement fit")

    def fit_start(self, datamodule) -> None:
        with torch.no_grad():
            self.fit(batch.image.to(self.device) for batch in datamodule.reference_dataloader())

    def configure_optimizers(self) -> None:
        return None

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        steps = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress  # Lightning's global_step
        steps.increment_ready()
        steps.increment_completed()
        self.trainer.should_stop = True  # validated and saved now, then done
        return None

    @property
    def automatic_optimization(self) -> bool:
        return False

    @automatic_optimization.setter
    def automatic_optimization(self, value: bool) -> None:
        if value:
            raise ValueError(f"{type(self).__name__} is fitted from statistics: it has no optimizer to step")
