"""The step after fitting: each kept checkpoint is calibrated for its own weights and written again, without the
optimizer state unless resuming is asked for (``resumable_checkpoints=true``). Saving during training never
calibrates: a killed run's checkpoints resume, and only what is kept and tested pays for calibration."""

import logging
from pathlib import Path

import torch
from lightning import Trainer

from fod_lightning.training.checkpoint_format import META_KEY, OPTIMIZER_KEYS, CheckpointRecord
from fod_lightning.training.module import AnomalyModule
from fod_lightning.utils.atomic import atomic_path

log = logging.getLogger(__name__)


def finish_checkpoints(trainer: Trainer, model: AnomalyModule, resumable: bool = False) -> list[Path]:
    """Calibrate the model in memory (the final weights, those of the last checkpoint) and every kept checkpoint file,
    each for its own weights; write the files again with their thresholds, without the optimizer state unless
    ``resumable``. Returns the files written. Under DDP every process calibrates the model in memory; the first
    writes the files."""
    datamodule = trainer.datamodule
    written = []
    for path in kept_files(trainer):
        record = CheckpointRecord.of(torch.load(path, map_location="cpu", weights_only=True, mmap=True), path)
        final = record.epoch == trainer.current_epoch - 1 and record.contents.get("global_step") == trainer.global_step
        if final:  # the weights in memory
            thresholds = model.calibrate(datamodule, record.epoch, trainer.global_step)
        elif trainer.is_global_zero:  # a best-epoch checkpoint: its own weights, in a module of its own
            other = type(model).from_record(record).to(model.device)
            thresholds = other.calibrate(datamodule, record.epoch, record.contents.get("global_step", 0))
        else:
            continue
        if trainer.is_global_zero:
            write(record, thresholds, resumable)
            written.append(path)
    if not written and trainer.global_step > 0:  # nothing kept (keep_checkpoints=none): the test still shows them
        model.calibrate(datamodule, trainer.current_epoch - 1, trainer.global_step)
    trainer.strategy.barrier("finish_checkpoints")
    return written


def kept_files(trainer: Trainer) -> list[Path]:
    """The checkpoint files the fit's checkpoint callbacks wrote and keep, the final one first."""
    paths = []
    for callback in sorted(trainer.checkpoint_callbacks, key=lambda c: c.monitor is not None):
        for path in (callback.best_model_path, callback.last_model_path):
            if path and Path(path).is_file() and Path(path) not in paths:
                paths.append(Path(path))
    return paths


def write(record: CheckpointRecord, thresholds: dict | None, resumable: bool) -> None:
    """The checkpoint file again, atomically: its thresholds, and its optimizer state only if ``resumable``."""
    contents = dict(record.contents)
    contents[META_KEY] = {**contents[META_KEY], "thresholds": thresholds}
    if not resumable:
        contents = {k: v for k, v in contents.items() if k not in OPTIMIZER_KEYS}
    with atomic_path(record.path) as tmp:
        torch.save(contents, tmp)
    log.debug("checkpoint %s calibrated%s", record.path, "" if resumable else ", without optimizer state")
