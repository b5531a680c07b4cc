"""Callbacks that simulate faults in a run (used by tests/test_faults.py, also in CLI subprocesses)."""

import os
import signal

import torch
from lightning import Callback


class KillAt(Callback):
    """SIGKILL the process at the start of training batch ``batch`` of epoch ``epoch``: no clean-up at all."""

    def __init__(self, epoch: int, batch: int = 0) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)


class PoisonAt(Callback):
    """Make a stage-0 weight NaN before training batch 0 of epoch ``epoch``, so that the loss becomes NaN."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == 0:
            with torch.no_grad():
                pl_module.net.stages[0].projection.weight[0, 0] = float("nan")
