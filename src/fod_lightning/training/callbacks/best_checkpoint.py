"""Checkpoint of the best validation epoch of one metric (the authors' -img / -pix checkpoints)."""

from lightning.pytorch.callbacks import ModelCheckpoint


class BestMetricCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` on one maximised metric that stays idle when the metric is not logged
    (e.g. pixel AUROC on classification-only data) instead of failing the run.

    These checkpoints only serve evaluation, so they hold the weights (and reference features) without
    the optimizer state, which would double their size; ``last.ckpt`` keeps what resuming needs."""

    def __init__(self, dirpath: str, monitor: str, filename: str) -> None:
        # enable_version_counter=False: in a run folder written over (overwrite=true) the file is replaced
        super().__init__(dirpath=dirpath, monitor=monitor, mode="max", filename=filename, save_top_k=1,
                         auto_insert_metric_name=False, save_weights_only=True,
                         enable_version_counter=False)  # fmt: skip

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.monitor in trainer.callback_metrics:
            super().on_validation_end(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.monitor in trainer.callback_metrics:
            super().on_train_epoch_end(trainer, pl_module)
