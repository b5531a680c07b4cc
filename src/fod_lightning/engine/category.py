"""One category of a job: build (or load) the model, fit it, test it, and return what it measured."""

import logging
from pathlib import Path

import hydra
import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, ProgressBar
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf

from fod_lightning.deploy.checkpoint import check_fits, fitted_model, resumable
from fod_lightning.deploy.submission import write_category_submission
from fod_lightning.engine.resume import continue_history, earlier_history
from fod_lightning.errors import ConfigError
from fod_lightning.metrics.original_resolution import original_resolution_metrics, with_original_resolution
from fod_lightning.metrics.thresholds import statement
from fod_lightning.reporting.results import VALIDATION_SPLITS
from fod_lightning.reporting.run_record import resolved_config
from fod_lightning.reporting.test_scores import write_test_scores
from fod_lightning.training.callbacks.best_checkpoint import BestMetricCheckpoint
from fod_lightning.training.checkpoint_format import CheckpointRecord
from fod_lightning.training.checkpoint_io import ReadOnceCheckpointIO
from fod_lightning.training.finish import finish_checkpoints
from fod_lightning.utils.resources import Cost

log = logging.getLogger(__name__)


def checked_datamodule(cfg: DictConfig):
    """The category's datamodule, its data checked (every file decoded once) before anything slow is built."""
    return hydra.utils.instantiate(cfg.data).check()


def fit_and_test_category(cfg: DictConfig, datamodule=None, parts: dict | None = None,
                          submission: Path | None = None) -> dict:  # fmt: skip
    """Train a fresh model on ``cfg.data.category`` (or resume, or load ``ckpt_path`` with ``train=false``), test it,
    and return its record: the model's :meth:`~fod_lightning.training.module.AnomalyModule.results` with how the
    tested weights were chosen, the epochs trained and the fit time. ``datamodule``: the category's, already checked
    (:func:`checked_datamodule`; None: built and checked here, first).

    ``parts``: the unified setting (``datamodule`` is then the union of categories, ``cfg`` its config): category ->
    (its config, its datamodule); the one model is tested on each, and the records are returned per category.
    ``submission``: the folder of MVTec AD 2's evaluation-server files, which this category's private splits join."""
    datamodule = datamodule or checked_datamodule(cfg)
    L.seed_everything(cfg.seed, workers=True)
    train = cfg.get("train", True)
    resumed = resumable(cfg.ckpt_path) if train and cfg.get("ckpt_path") else None  # read once, also by Lightning
    model = model_for(cfg, resumed, datamodule.resize, datamodule.image_size)
    model.check_setting(cfg.get("setting", "separate"))
    log_dir = Path(cfg.paths.output_dir) / cfg.data.category
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values()]
    if resumed is not None:  # one metrics history for the category
        continue_history(loggers, earlier_history(log_dir, resumed.epoch))
    tested = {}
    try:
        keep = kept_checkpoints(cfg, model)
        callbacks = instantiate_callbacks(cfg)
        callbacks = [c for c in callbacks if keep == "all" or not isinstance(c, BestMetricCheckpoint)]
        callbacks += early_stopping(cfg)
        plugins = [ReadOnceCheckpointIO(resumed.path, resumed.contents)] if resumed is not None else None
        trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks, plugins=plugins)
        for lg in loggers:
            lg.log_hyperparams(resolved_config(cfg))
        with Cost() as fit:
            if train:
                trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
        if train:  # the explicit calibration of what is kept, outside the fit's cost
            finish_checkpoints(trainer, model, resumable=bool(cfg.get("resumable_checkpoints", False)))
        tests = {None: (cfg, datamodule, trainer)} if parts is None else {
            name: (part_cfg, part, tester(part_cfg)) for name, (part_cfg, part) in parts.items()}  # fmt: skip
        records = {}
        if cfg.get("test", True):
            test_path, tested = checkpoint_to_test(cfg, trainer, model, train)
        for name, (test_cfg, test_data, test_trainer) in tests.items() if cfg.get("test", True) else ():
            # the chosen weights are read once: the unified model's later categories test the model as loaded
            test_trainer.test(model, datamodule=test_data, ckpt_path=test_path, verbose=False, weights_only=True)
            test_path = None
            if trainer.is_global_zero and model.evaluator.predictions:
                folder = Path(test_cfg.paths.output_dir) / test_cfg.data.category
                write_test_scores(folder / "scores.csv", model.evaluator.predictions, model.thresholds.image)
            records[name] = model.results()
            if getattr(test_data, "metrics_resolution", "input") == "original" and model.evaluator.predictions:
                original = original_resolution_metrics(model.evaluator.predictions, test_data.split("test").samples,
                                                       model.contract, model.evaluator.aupro_fpr_limit,
                                                       model.thresholds.pixel)  # fmt: skip
                records[name] = with_original_resolution(records[name], original)
        if submission is not None and trainer.is_global_zero:
            for _, (_, test_data, _) in tests.items():
                write_category_submission(model, test_data, submission)
        log_thresholds(loggers, model)
        if keep == "none":
            remove_checkpoints(trainer)
    finally:
        finish_loggers(loggers)
    if not datamodule.has_masks:
        log.warning("%s has no masks: pixel metrics are skipped", cfg.data.category)
    shared = {"test_ckpt": tested, "epochs": trainer.current_epoch, "fit_seconds": round(fit.seconds, 1),
              "fitted_in_one_pass": model.fitted_in_one_pass, "thresholds": thresholds_record(model)}  # fmt: skip
    records = {name: record | shared | {"cost": record.get("cost", {}) | fit_cost(fit)}
               for name, record in (records or {None: model.results()}).items()}  # fmt: skip
    return records[None] if parts is None else records


def instantiate_callbacks(cfg: DictConfig) -> list:
    """The config's callbacks; with ``trainer.enable_progress_bar=false`` without its progress bar (Lightning refuses
    the two together), so that switching the bar off is one setting."""
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    if not cfg.trainer.get("enable_progress_bar", True):
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    return callbacks


def tester(cfg: DictConfig) -> L.Trainer:
    """A trainer that tests one category of the unified model: that category's pictures, no logger, no checkpoints."""
    callbacks = instantiate_callbacks(cfg)
    callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint)]
    return hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=callbacks)


def thresholds_record(model) -> dict | None:
    """The decision thresholds the tested model carries, how they were set and what they promise."""
    saved = model.thresholds.calibrated
    if not saved:
        return None
    keys = ("image", "pixel", "source", "image_rule", "false_alarm_rate", "image_quantile", "pixel_quantile",
            "num_images", "held_out")  # fmt: skip
    return {k: saved[k] for k in keys if k in saved} | {"statement": statement(saved)}


def log_thresholds(loggers: list, model) -> None:
    """The thresholds in each W&B run's summary (its other loggers have them in results.json)."""
    record = thresholds_record(model)
    for lg in loggers:
        if record and isinstance(lg, WandbLogger):
            lg.experiment.summary.update({f"thresholds/{k}": v for k, v in record.items()})


def early_stopping(cfg: DictConfig) -> list[EarlyStopping]:
    """``early_stopping_patience=N``: Lightning's early stopping on ``test_ckpt_metric`` (held-out validation)."""
    patience = cfg.get("early_stopping_patience")
    return [] if patience is None else [EarlyStopping(monitor=cfg.test_ckpt_metric, mode="max", patience=patience)]


def kept_checkpoints(cfg: DictConfig, model) -> str:
    """``keep_checkpoints``, with ``auto`` resolved: the final checkpoint, and the best-epoch ones only when the test
    uses them (``test_ckpt=best``). A model fitted in one pass has one checkpoint: ``all`` is ``last`` for it."""
    keep = cfg.get("keep_checkpoints", "auto")
    if keep == "auto":
        keep = "all" if cfg.get("test_ckpt", "last") == "best" else "last"
    return "last" if keep == "all" and model.fitted_in_one_pass else keep


def remove_checkpoints(trainer: L.Trainer) -> None:
    """``keep_checkpoints=none``: the checkpoints this job wrote, removed once it is tested."""
    for callback in trainer.checkpoint_callbacks:
        for path in {callback.best_model_path, callback.last_model_path} - {""}:
            Path(path).unlink(missing_ok=True)
        if callback.dirpath and Path(callback.dirpath).is_dir() and not any(Path(callback.dirpath).iterdir()):
            Path(callback.dirpath).rmdir()


def fit_cost(fit: Cost) -> dict:
    """Fit time and peak memory of a category (where they are known)."""
    cost = {"fit_seconds": round(fit.seconds, 2), "fit_peak_rss_mib": fit.peak_rss_mib,
            "fit_peak_cuda_mib": fit.peak_cuda_mib}  # fmt: skip
    return {k: v for k, v in cost.items() if v is not None}


def model_for(cfg: DictConfig, resumed: CheckpointRecord | None, resize: str, image_size: int | list[int]):
    """The model of the config (to train, or to resume from the checkpoint ``resumed``), or with ``train=false`` the
    fitted model of ``ckpt_path`` (any kind of checkpoint). A checkpoint must fit this category, image size and
    backbone, unless ``allow_mismatch=true``; loading never executes code from the file."""
    path = cfg.get("ckpt_path")
    if not path:
        return hydra.utils.instantiate(cfg.model)
    backbone = OmegaConf.select(cfg, "model.net.backbone")
    fits = {"category": cfg.data.category, "image_size": image_size,
            "backbone": backbone.get("name") if backbone is not None else None}  # fmt: skip
    allow = bool(cfg.get("allow_mismatch", False))
    if resumed is not None:
        if not allow:
            check_fits(resumed.described(), path, **fits)
        return hydra.utils.instantiate(cfg.model)
    options = dict(cfg.get("reader") or {})
    options["resize"] = options.get("resize") or resize
    return fitted_model(path, options, (lambda: hydra.utils.instantiate(backbone)) if backbone else None,
                        build=lambda: hydra.utils.instantiate(cfg.model), fits=fits, allow_mismatch=allow)  # fmt: skip


def checkpoint_to_test(cfg: DictConfig, trainer: L.Trainer, model, trained: bool) -> tuple[str | None, dict]:
    """The checkpoint the test split is scored with (None: the model in memory) and how it was chosen."""
    if not trained:
        return None, {"used": "ckpt_path", "path": cfg.get("ckpt_path")}
    if cfg.get("test_ckpt", "last") == "last":
        return None, {"used": "last", "epoch": trainer.current_epoch - 1}
    metric = cfg.test_ckpt_metric
    callback = next((c for c in trainer.checkpoint_callbacks if c.monitor == metric), None)
    if callback is None or not callback.best_model_path:
        raise ConfigError(
            f"test_ckpt=best found no checkpoint best on test_ckpt_metric={metric}: no validation epoch measured it; "
            "set trainer.check_val_every_n_epoch <= trainer.max_epochs"
        )
    split = VALIDATION_SPLITS.get(cfg.data.get("val_protocol", "paper"))
    best_epoch = model.evaluator.best.get(metric, (None, None))[1]
    return callback.best_model_path, {"used": "best", "path": callback.best_model_path, "selected_by": metric,
                                      "epoch": best_epoch, "selected_on": split}  # fmt: skip


def finish_loggers(loggers: list) -> None:
    """Close W&B runs so that each category and each multirun job gets its own run."""
    for lg in loggers:
        if isinstance(lg, WandbLogger):
            lg.experiment.finish()
