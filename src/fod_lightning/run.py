"""Hydra entry: fit and test FOD on one category, a list of categories, or all categories of a benchmark.

python -m fod_lightning.run                      # embedded benchmark, all categories
python -m fod_lightning.run data=mvtec data.root=/data/mvtec data.category=bottle
python -m fod_lightning.run -m data.category=brick,grass seed=1,2   # a sweep: one job per combination
"""

import logging
import math
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from fod_lightning.deploy.authors import is_official_checkpoint, load_official
from fod_lightning.deploy.checkpoint import check_fits, fitted_model_info, loaded_model_info, read_checkpoint
from fod_lightning.engine.categories import categories_of
from fod_lightning.engine.checks import check_backbone_node, check_config
from fod_lightning.engine.objective import objective_value
from fod_lightning.errors import ConfigError, FODUserError, one_line, user_error
from fod_lightning.launch.ddp_jobs import ddp_job_scope
from fod_lightning.reporting.results import METRICS, VALIDATION_SPLITS, build_results, format_table, write_results
from fod_lightning.reporting.run_record import resolved_config, run_record
from fod_lightning.training.fod_module import FODLitModule
from fod_lightning.utils.config_dir import CONFIG_DIR
from fod_lightning.utils.hydra_job import in_multirun, sweep_group

log = logging.getLogger("fod_lightning")
# The frozen backbone stays in eval mode on purpose.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
OmegaConf.register_new_resolver("sweep_group", sweep_group, replace=True)


def fit_and_test_category(cfg: DictConfig) -> dict:
    """Train a fresh model on ``cfg.data.category`` (or load ``ckpt_path``) and return its metrics."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule = hydra.utils.instantiate(cfg.data)
    train, ckpt_path = cfg.get("train", True), cfg.get("ckpt_path")
    official = bool(ckpt_path) and is_official_checkpoint(ckpt_path)
    model = authors_model(cfg, datamodule.resize) if official else None
    if ckpt_path:
        check_checkpoint(cfg, model)
    model = model or hydra.utils.instantiate(cfg.model)
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values()]
    try:
        callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
        trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
        for lg in loggers:
            lg.log_hyperparams(resolved_config(cfg))
        start = time.perf_counter()
        if train:
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        fit_seconds = time.perf_counter() - start
        # Read before testing: loading a checkpoint for the test restores its own (older) best values.
        best = {k.removeprefix("val/"): {"value": v, "epoch": e} for k, (v, e) in model.best.items()}
        val = {k.removeprefix("val/"): float(v) for k, v in trainer.callback_metrics.items()
               if k.startswith("val/") and not k.endswith("_best")}  # fmt: skip
        metrics, tested = {}, {}
        if cfg.get("test", True):
            test_path, tested = checkpoint_to_test(cfg, trainer, best, train)
            test_path = None if official else test_path  # already loaded: not a Lightning checkpoint
            (out,) = trainer.test(model, datamodule=datamodule, ckpt_path=test_path, verbose=False, weights_only=True)
            metrics = {k.removeprefix("test/"): float(v) for k, v in out.items()}
            metrics["num_images"] = int(metrics.get("num_images", 0))  # scored test images, all processes
    finally:
        finish_loggers(loggers)
    best = {k: v for k, v in best.items() if k in METRICS}
    result = {**metrics, "val": {k: v for k, v in val.items() if k in METRICS}, "best": best, "test_ckpt": tested,
              "epochs": trainer.current_epoch, "fit_seconds": round(fit_seconds, 1)}  # fmt: skip
    defects = next((c.defects for c in callbacks if getattr(c, "defects", None)), None)  # TestPictures
    if defects:
        result["defects"] = defects
    if "test" in model.metrics and model.metrics["test"].not_available:  # e.g. no anomalous test image
        result["not_available"] = dict(model.metrics["test"].not_available)
    if not datamodule.has_masks:
        result["note"] = "no ground-truth masks: pixel metrics skipped"
        log.warning("%s has no masks: pixel metrics are skipped", cfg.data.category)
    return result


def checkpoint_to_test(cfg: DictConfig, trainer: L.Trainer, best: dict, trained: bool) -> tuple[str | None, dict]:
    """The checkpoint the test split is scored with (None: the model in memory) and how it was chosen."""
    if not trained:
        return cfg.get("ckpt_path"), {"used": "ckpt_path", "path": cfg.get("ckpt_path")}
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
    return callback.best_model_path, {"used": "best", "path": callback.best_model_path, "selected_by": metric,
                                      "epoch": best.get(metric.removeprefix("val/"), {}).get("epoch"),
                                      "selected_on": split}  # fmt: skip


def check_checkpoint(cfg: DictConfig, authors: FODLitModule | None) -> None:
    """A plain checkpoint (loading never executes code from the file) fitted on this category, image size and
    backbone, unless ``allow_mismatch=true``. Checkpoints of older versions carry no description: not checked.
    ``authors``: the model loaded from an authors' checkpoint, if it is one."""
    path = cfg.ckpt_path
    if authors is not None:
        if cfg.get("train", True):
            raise ConfigError(f"{path} is an authors' checkpoint: it can be evaluated (train=false), not resumed")
        info = loaded_model_info(authors)
    else:
        checkpoint = read_checkpoint(path)
        if not checkpoint.get("fod"):
            return
        info = fitted_model_info(checkpoint, path)
    if not cfg.get("allow_mismatch", False):
        check_fits(info, path, cfg.data.category, cfg.data.image_size, cfg.model.net.backbone.name)


def authors_model(cfg: DictConfig, resize: str) -> FODLitModule:
    """An authors' ``<class>-img/-pix.pth`` with its ``reference_features`` (``<class>.pkl``) on the backbone of
    ``model/net/backbone`` (widths and heads read from the tensors, the image size from the reference)."""
    backbone = hydra.utils.instantiate(cfg.model.net.backbone)
    return load_official(cfg.ckpt_path, cfg.get("reference_features"), backbone, resize=resize)


def finish_loggers(loggers: list) -> None:
    """Close W&B runs so that each category and each multirun job gets its own run."""
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger":
            lg.experiment.finish()


def run(cfg: DictConfig) -> dict:
    """Fit and test every requested category; keep ``results.json`` in ``paths.output_dir`` up to date (status
    ``running``, then ``done`` or ``failed``), so that a stopped job is visible as such."""
    check_backbone_node(cfg)  # first: without it the config cannot even be recorded
    torch.set_float32_matmul_precision(cfg.get("float32_matmul_precision", "highest"))
    output_dir = Path(cfg.paths.output_dir)
    datamodule_cls = hydra.utils.get_class(cfg.data._target_)
    protocol = cfg.data.get("val_protocol", "paper")
    record = run_record(cfg, output_dir)
    per_category, notes = {}, []

    def save() -> dict:
        backbone = OmegaConf.select(
            cfg, "model.net.backbone.name", default=str(OmegaConf.select(cfg, "model.net.backbone"))
        )
        results = build_results(datamodule_cls.benchmark, backbone, protocol,
                                cfg.get("test_ckpt", "last"), per_category, record, notes)  # fmt: skip
        if rank_zero_only.rank == 0:  # one writer under DDP
            write_results(results, output_dir / "results.json")
        return results

    try:
        check_config(cfg)
        categories = categories_of(cfg)
        notes += categories.notes(datamodule_cls.benchmark, str(cfg.data.root))
        for note in notes:
            log.warning(note)
        record["categories_planned"] = categories.names
        save()
        errors: dict[str, Exception] = {}
        resumed = resumed_run(cfg) if cfg.get("ckpt_path") == "last" else None
        if resumed is not None:
            record["resumed"] = str(resumed)
        for category in categories.names:
            log.info("category %s", category)
            try:
                per_category[category] = fit_and_test_category(category_config(cfg, category, resumed))
            except Exception as err:  # recorded; the other categories go on
                log.error("category %s failed: %s", category, error_line(err), exc_info=user_error(err) is None)
                per_category[category] = {"status": "failed", "error": error_line(err)}
                errors[category] = err
            save()
        if errors:
            raise_failures(errors, len(categories.names), output_dir)
    except Exception as err:
        record |= {"status": "failed", "error": error_line(err)}
        save()
        raise
    record |= {"status": "done", "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    results = save()
    if rank_zero_only.rank == 0:
        report(cfg, results, output_dir)
    return results


LAST_CKPTS = "*/checkpoints/last.ckpt"  # <category>/checkpoints/last.ckpt in a run folder


def category_config(cfg: DictConfig, category: str, resumed: Path | None = None) -> DictConfig:
    """The job's config for one category; ``ckpt_path=last`` becomes the category's ``last.ckpt`` in the
    ``resumed`` run folder, or nothing (trained afresh) if the category had not started there."""
    category_cfg = cfg.copy()
    with open_dict(category_cfg):
        category_cfg.data.category = category
        if cfg.get("ckpt_path") == "last":
            last = resumed / category / "checkpoints" / "last.ckpt"
            category_cfg.ckpt_path = str(last) if last.is_file() else None
            if category_cfg.ckpt_path is None:
                log.info("category %s has no last.ckpt in %s: trained afresh", category, resumed)
    return category_cfg


def resumed_run(cfg: DictConfig) -> Path:
    """The one run ``ckpt_path=last`` resumes: this run folder if it holds a category's ``last.ckpt``, else the
    earlier run of this task (``<log_dir>/<task_name>/runs/*``; in a multirun: the same job number of earlier
    sweeps) with the newest one. Never a mix of runs: a category without a checkpoint there starts afresh."""
    own = Path(cfg.paths.output_dir)
    if any(own.glob(LAST_CKPTS)):
        return own
    task = Path(cfg.paths.log_dir) / cfg.task_name
    pattern = f"multiruns/*/{HydraConfig.get().job.num}" if in_multirun() else "runs/*"
    newest = {run: max(p.stat().st_mtime for p in ckpts) for run in task.glob(pattern)
              if run != own and (ckpts := list(run.glob(LAST_CKPTS)))}  # fmt: skip
    if not newest:
        raise ConfigError(
            f"ckpt_path=last found no <category>/checkpoints/last.ckpt in {own} or in earlier runs under {task}: "
            "give the checkpoint's path, or start without ckpt_path"
        )
    return max(newest, key=newest.get)


class CategoriesFailedError(FODUserError, RuntimeError):
    """Some categories of a job failed; the others' results were kept."""


def raise_failures(errors: dict[str, Exception], planned: int, output_dir: Path) -> None:
    """Every category failed alike (or the job had one): that error. Otherwise one line naming each failure."""
    lines = {error_line(e) for e in errors.values()}
    if len(errors) == planned and len(lines) == 1:
        raise next(iter(errors.values()))
    summary = "; ".join(f"{name}: {error_line(e)}" for name, e in errors.items())
    raise CategoriesFailedError(
        f"{len(errors)} of {planned} categories failed ({summary}); the others' results are in "
        f"{output_dir / 'results.json'}"
    )


def error_line(err: BaseException) -> str:
    """A user error's one line, or the type and the whole message of another error, on one line."""
    cause = user_error(err)
    if cause is not None:
        return one_line(cause)
    return f"{type(err).__name__}: {' '.join(str(err).split())}"[:500]


def report(cfg: DictConfig, results: dict, output_dir: Path) -> None:
    """The printed tables; for a single run also the summary files and its W&B summary run (a sweep gets
    them once, when it ends: ``fod_lightning.launch.sweep_callback``)."""
    title = f"{results['benchmark']}, {results['backbone']}, test_ckpt {results['test_ckpt']}"
    print(f"\n{title}, test split\n{format_table(results)}")
    print(f"\nbest over validation epochs (authors' protocol, {results['protocol']})\n{format_table(results, 'best')}")
    from fod_lightning.reporting.results import format_defect_table

    if defects := format_defect_table(results):
        print(f"\nper defect type (test split: the normal test images vs each type's images)\n{defects}")
    print(f"results: {output_dir / 'results.json'}")
    if in_multirun():
        return
    from fod_lightning.reporting import summarize_folder

    summary = summarize_folder(output_dir)
    if "wandb" in (cfg.get("logger") or {}):
        from fod_lightning.reporting.wandb_summary import log_summary_run

        log_summary_run(summary)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="run")
def main(cfg: DictConfig) -> float | None:
    """Run the job; return ``optimized_metric`` (mean over the job's categories) for a sweeper.

    Bad input or config is the user's to fix: one line naming the file or key and the fix. In a multirun a
    failed job returns nan (its results.json says ``failed``) and the sweep goes on.
    """
    with ddp_job_scope():
        try:
            results = run(cfg)
        except Exception as err:
            cause = user_error(err)
            if cause is None and not in_multirun():
                raise
            if cause is None:
                log.exception("job failed")
            print(f"error: {error_line(err)}", file=sys.stderr)
            if not in_multirun():
                sys.exit(2)
            return math.nan
    name = cfg.get("optimized_metric")
    return objective_value(results, name) if name else None


if __name__ == "__main__":
    main()
