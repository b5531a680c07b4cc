"""Models fitted from statistics of the normal images (memory banks, Gaussians): no optimizer, one pass."""

from lightning.pytorch.utilities.types import STEP_OUTPUT

from fod_lightning.data.batch import Batch
from fod_lightning.training.module import AnomalyModule


class StatisticsModule(AnomalyModule):
    """Base of models that are fitted, not trained: each training batch goes to :meth:`fit_batch`, and after the
    epoch's last batch :meth:`fit_end` builds the model (before validation and the epoch's checkpoint). Each batch
    counts as a step, so that logging and checkpoints work as for trained models. One epoch is all they need
    (more epochs fit again from the same images)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.automatic_optimization = False

    def fit_batch(self, batch: Batch) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not implement fit_batch")

    def fit_end(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not implement fit_end")

    def configure_optimizers(self) -> None:
        return None

    def training_step(self, batch: Batch, batch_idx: int) -> STEP_OUTPUT:
        self.fit_batch(batch)
        steps = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress  # Lightning's global_step
        steps.increment_ready()
        steps.increment_completed()
        if batch_idx + 1 >= self.trainer.num_training_batches:
            self.fit_end()
        return None
