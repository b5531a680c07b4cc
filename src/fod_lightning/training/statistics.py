"""Models fitted from statistics of the normal images (memory banks, Gaussians): no optimizer, one pass."""

from collections.abc import Iterator

import torch

from fod_lightning.data.batch import Batch
from fod_lightning.training.module import AnomalyModule
from fod_lightning.utils.progress import with_progress


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
        loader = datamodule.reference_dataloader()
        batches = with_progress(loader, f"{type(self.net).__name__}: fitting on the normal training images (batches)",
                                len(loader))  # fmt: skip
        with torch.no_grad():
            self.fit(batch.image.to(self.device) for batch in batches)

    @property
    def fitted_in_one_pass(self) -> bool:
        return True

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """An optimizer of nothing, stepped once: the one counted step (Lightning's ``global_step``), with which the
        epoch validates and saves as a trained model's does. It owns no parameter of the model (an empty placeholder
        of its own)."""
        return torch.optim.SGD([torch.nn.Parameter(torch.zeros(0))], lr=0.0)

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        self.optimizers().step()  # manual optimization: counts the step
        self.trainer.should_stop = True  # validated and saved now, then done
        return None

    @property
    def automatic_optimization(self) -> bool:
        return False

    @automatic_optimization.setter
    def automatic_optimization(self, value: bool) -> None:
        if value:
            raise ValueError(f"{type(self).__name__} is fitted from statistics: it has no optimizer to step")
