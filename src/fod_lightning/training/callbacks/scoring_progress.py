"""Progress lines while the test split is scored: a large one (MVTec AD 2's megapixel images, a VisA category) takes
minutes, and Lightning's bar reaches neither the run's log file nor a terminal without it (``enable_progress_bar``
false). :class:`~fod_lightning.utils.progress.Progress` lines (the share done, the time spent, an estimate of the time
left, at most every ``every`` seconds) from the main process."""

import math

from lightning.pytorch import Callback

from fod_lightning.utils.progress import Progress


class ScoringProgress(Callback):
    def __init__(self, every: float = 10.0) -> None:
        self.every, self.progress = every, None

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        total = sum(n for n in trainer.num_test_batches if math.isfinite(n))
        if trainer.is_global_zero:
            what = f"{type(pl_module).__name__}: scoring the test split (batches)"
            self.progress = Progress(what, total, self.every)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.progress is not None:
            self.progress.advance()

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        if self.progress is not None:
            self.progress.finish()
            self.progress = None
