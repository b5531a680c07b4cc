"""Hydra entry: fit and test FOD on one category or all categories of a benchmark.

python -m fod_lightning.run                      # embedded benchmark, all categories
python -m fod_lightning.run data=mvtec data.root=/data/mvtec data.category=bottle
"""

import logging
import sys
import time
import warnings
from pathlib import Path

import hydra
import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from fod_lightning.errors import ConfigError, one_line, user_error
from fod_lightning.plots import metric_bars
from fod_lightning.results import METRICS, build_results, format_table, write_results, write_tables

log = logging.getLogger("fod_lightning")
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")
# The frozen backbone stays in eval mode on purpose.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def categories_of(cfg: DictConfig) -> list[str]:
    """``data.category`` expanded: ``all`` means every category of the benchmark, in order."""
    datamodule_cls = hydra.utils.get_class(cfg.data._target_)
    requested = str(cfg.data.category)
    if requested == "all":
        return list(datamodule_cls.categories)
    datamodule_cls.check_category(requested)
    return [requested]


def fit_and_test_category(cfg: DictConfig) -> dict:
    """Train a fresh model on ``cfg.data.category`` (or load ``ckpt_path``) and return its metrics."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule = hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(cfg.model)
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values()]
    try:
        callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
        trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
        for lg in loggers:
            lg.log_hyperparams(resolved_config(cfg))
        start = time.perf_counter()
        train, ckpt_path = cfg.get("train", True), cfg.get("ckpt_path")
        if ckpt_path:
            check_checkpoint(Path(ckpt_path))
        if train:
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        fit_seconds = time.perf_counter() - start
        metrics = {}
        if cfg.get("test", True):
            # Without training, the weights (and reference features) come from ckpt_path.
            test_ckpt = None if train else ckpt_path
            (tested,) = trainer.test(
                model, datamodule=datamodule, ckpt_path=test_ckpt, verbose=False, weights_only=True
            )
            metrics = {k.removeprefix("test/"): float(v) for k, v in tested.items()}
    finally:
        finish_loggers(loggers)
    best = {k.removeprefix("val/"): {"value": v, "epoch": e} for k, (v, e) in model.best.items()}
    result = {**metrics, "best": best, "epochs": trainer.current_epoch, "fit_seconds": round(fit_seconds, 1)}
    if not datamodule.has_masks:
        result["note"] = "no ground-truth masks: pixel metrics skipped"
        log.warning("%s has no masks: pixel metrics are skipped", cfg.data.category)
    return result


def check_checkpoint(path: Path) -> None:
    """Refuse missing files and checkpoints that hold more than tensors and plain data: loading
    never executes code from the file."""
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} does not exist: fix ckpt_path")
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        raise ConfigError(
            f"checkpoint {path} is not a plain fod_lightning checkpoint ({type(err).__name__}); it was not "
            "loaded, since that could run code from the file: use a checkpoint written by this project"
        ) from err


def resolved_config(cfg: DictConfig) -> dict:
    """The run's config with interpolations resolved (Hydra's own node left out)."""
    return {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
            for k in cfg if k != "hydra"}  # fmt: skip


def finish_loggers(loggers: list) -> None:
    """Close W&B runs so that each category and each multirun job gets its own run."""
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger":
            lg.experiment.finish()


def run(cfg: DictConfig) -> dict:
    """Fit and test every requested category; write ``results.json`` into ``paths.output_dir``."""
    torch.set_float32_matmul_precision(cfg.get("float32_matmul_precision", "highest"))
    output_dir = Path(cfg.paths.output_dir)
    benchmark = hydra.utils.get_class(cfg.data._target_).benchmark
    protocol = cfg.data.get("val_protocol", "paper")
    per_category = {}
    for category in categories_of(cfg):
        log.info("category %s", category)
        category_cfg = cfg.copy()
        with open_dict(category_cfg):
            category_cfg.data.category = category
        per_category[category] = fit_and_test_category(category_cfg)
        results = build_results(benchmark, cfg.model.backbone.name, protocol, per_category)
        if rank_zero_only.rank == 0:  # one writer under DDP
            write_results(results, output_dir / "results.json")
    if rank_zero_only.rank == 0:
        report(cfg, results, output_dir)
    return results


def report(cfg: DictConfig, results: dict, output_dir: Path) -> None:
    """Summary tables, the per-category bar chart, the W&B summary run and the printed tables."""
    write_tables(results, output_dir)
    title = f"{results['benchmark']}, {results['backbone']} (final model)"
    metric_bars(results["categories"], METRICS, title, output_dir / "metrics_per_category.png")
    if "wandb" in (cfg.get("logger") or {}):
        log_wandb_summary(cfg, results)
    print(f"\n{title}, test split\n{format_table(results)}")
    print(f"\nbest over validation epochs (authors' protocol, {results['protocol']})\n{format_table(results, 'best')}")
    print(f"results: {output_dir / 'results.json'}")


def log_wandb_summary(cfg: DictConfig, results: dict) -> None:
    """A closing W&B run in the job's group holding the per-category + mean table."""
    import wandb

    summary_cfg = cfg.copy()
    with open_dict(summary_cfg):
        summary_cfg.data.category = "summary"
    logger = hydra.utils.instantiate(summary_cfg.logger.wandb)
    table = wandb.Table(columns=["category", *METRICS])
    for name, metrics in [*results["categories"].items(), ("mean", results["mean"])]:
        table.add_data(name, *(metrics.get(m) for m in METRICS))
    means = {f"summary/mean_{k}": v for k, v in results["mean"].items()}
    logger.experiment.log({"summary/per_category": table, **means})
    logger.experiment.finish()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="run")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except Exception as err:
        # Bad input or config is the user's to fix: one line naming the file or key and the fix.
        cause = user_error(err)
        if cause is None:
            raise
        print(f"error: {one_line(cause)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
