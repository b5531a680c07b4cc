"""A job: every requested category fitted and tested in turn, one results record kept up to date on disk."""

import logging
from datetime import datetime, timezone
from pathlib import Path

import hydra
import torch
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from fod_lightning.data.unified import UNIFIED, check_unified_categories
from fod_lightning.deploy.submission import pack_submission, prepare_submission
from fod_lightning.engine.advice import validation_advice
from fod_lightning.engine.categories import categories_of
from fod_lightning.engine.category import checked_datamodule, fit_and_test_category
from fod_lightning.engine.checks import check_backbone_node, check_config
from fod_lightning.engine.objective import objective_value
from fod_lightning.engine.resume import category_config, resumed_run
from fod_lightning.engine.unified import fit_and_test_unified
from fod_lightning.errors import ConfigError, UserError, error_line, user_error
from fod_lightning.launch.output_folder import remove_unused_run_folder
from fod_lightning.reporting.ending import summarize_and_log
from fod_lightning.reporting.results import (
    VALIDATION_SPLITS,
    build_results,
    format_defect_table,
    format_table,
    write_results,
)
from fod_lightning.reporting.run_record import run_record
from fod_lightning.utils.hydra_job import choice, in_multirun
from fod_lightning.utils.quiet import silence_foreign_tips

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    """Fit and test every requested category; keep ``results.json`` in ``paths.output_dir`` up to date (status
    ``running``, then ``done`` or ``failed``), so that a stopped job is visible as such.

    ``ckpt_path=last`` continues the resumed run in its own folder (one folder, one metrics history per category);
    the folder Hydra made for this command is then removed. A single run stopped by its config before any category
    started leaves no run folder behind (a multirun keeps the failed job's ``results.json``: the sweep says why)."""
    check_backbone_node(cfg)  # first: without it the config cannot even be recorded
    silence_foreign_tips()
    torch.set_float32_matmul_precision(cfg.get("float32_matmul_precision", "highest"))
    hydra_folder = output_dir = Path(cfg.paths.output_dir)
    datamodule_cls = hydra.utils.get_class(cfg.data._target_)
    protocol = cfg.data.get("val_protocol", "paper")
    record = run_record(cfg, output_dir)
    per_category, notes = {}, []

    backbone = OmegaConf.select(cfg, "model.net.backbone")
    backbone = backbone.get("name") if OmegaConf.is_dict(backbone) else str(backbone)
    model = choice("model") or str(OmegaConf.select(cfg, "model._target_", default="?")).rpartition(".")[2]

    def save() -> dict:
        results = build_results(datamodule_cls.benchmark, backbone, protocol, cfg.get("test_ckpt", "last"),
                                per_category, record, notes, model, cfg.get("setting", "separate"))  # fmt: skip
        if rank_zero_only.rank == 0:  # one writer under DDP
            write_results(results, output_dir / "results.json")
        return results

    checked = {}  # category -> its datamodule, checked before anything slow
    try:
        check_config(cfg)
        categories = categories_of(cfg)
        resumed = resumed_run(cfg) if cfg.get("ckpt_path") == "last" else None
        unified = cfg.get("setting", "separate") == UNIFIED
        if unified:
            check_unified_categories(categories.names)
        submission = submission_folder(cfg, datamodule_cls, output_dir)
        if len(categories.names) == 1:  # its data now: a broken layout stops the run before it leaves anything
            name = categories.names[0]
            checked[name] = checked_datamodule(category_config(cfg, name, resumed))
    except Exception as err:
        if in_multirun():
            record |= {"status": "failed", "error": error_line(err)}
            save()
        elif rank_zero_only.rank == 0:
            remove_unused_run_folder(hydra_folder)
        raise
    if resumed is not None:
        record["resumed"] = str(resumed)
        if resumed != output_dir:
            log.info("continuing %s in its folder", resumed)
            cfg, output_dir = in_folder(cfg, resumed), resumed
    try:
        notes += categories.notes(datamodule_cls.benchmark, str(cfg.data.root))
        for note in notes:
            log.warning(note)
        record["categories_planned"] = categories.names
        save()
        errors: dict[str, Exception] = {}
        if unified:  # one model: a failure fails the job
            per_category.update(fit_and_test_unified(cfg, categories.names, resumed))
        for category in () if unified else categories.names:
            log.info("category %s", category)
            try:
                per_category[category] = fit_and_test_category(
                    category_config(cfg, category, resumed), checked.pop(category, None), submission=submission
                )
            except Exception as err:  # recorded; the other categories go on
                log.error("category %s failed: %s", category, error_line(err), exc_info=user_error(err) is None)
                per_category[category] = {"status": "failed", "error": error_line(err)}
                errors[category] = err
            save()
        if errors:
            raise_failures(errors, len(categories.names), output_dir)
        if submission is not None and rank_zero_only.rank == 0:  # checked as the server would, then packed
            archive = pack_submission(submission, cfg.data.root, categories.names)
            record["submission"] = {"folder": str(submission), "archive": str(archive), "objects": categories.names}
    except Exception as err:
        record |= {"status": "failed", "error": error_line(err)}
        save()
        raise
    finally:
        if output_dir != hydra_folder and rank_zero_only.rank == 0:
            remove_unused_run_folder(hydra_folder)
    record |= {"status": "done", "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    advice = validation_advice(per_category, protocol)
    notes += advice
    if cfg.get("optimized_metric"):  # what the sweeper optimises, kept with the job (a study survives its process)
        name = cfg.optimized_metric
        record["objective"] = {"name": name, "value": objective_value(save(), name)}
    results = save()
    if rank_zero_only.rank == 0:
        report(cfg, results, output_dir)
        for line in advice:  # last, where it is seen
            log.warning(line)
    return results


def submission_folder(cfg: DictConfig, datamodule_cls: type, output_dir: Path) -> Path | None:
    """``submission=true``: the run's ``submission/`` folder, made empty (one that holds files is refused, never
    written over), for a benchmark whose private splits an evaluation server scores (MVTec AD 2)."""
    if not cfg.get("submission", False):
        return None
    if not hasattr(datamodule_cls, "private_samples"):
        raise ConfigError(f"submission=true writes the evaluation server's files of MVTec AD 2's private splits: "
                          f"{datamodule_cls.benchmark} has none (data=mvtec_ad2)")  # fmt: skip
    return prepare_submission(output_dir / "submission") if rank_zero_only.rank == 0 else output_dir / "submission"


def in_folder(cfg: DictConfig, folder: Path) -> DictConfig:
    """The job's config writing into ``folder`` (checkpoints, logs, pictures follow ``paths.output_dir``)."""
    moved = cfg.copy()
    with open_dict(moved):
        moved.paths.output_dir = str(folder)
    return moved


class CategoriesFailedError(UserError, RuntimeError):
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


def report(cfg: DictConfig, results: dict, output_dir: Path) -> None:
    """The printed tables; for a single run also the summary files and its W&B summary run (a sweep gets
    them once, when it ends: ``fod_lightning.launch.sweep_callback``)."""
    title = (f"{results['model']}, {results['benchmark']}, {results['backbone']}, {results.get('setting', 'separate')} "
             f"setting, test_ckpt {results['test_ckpt']}")  # fmt: skip
    print(f"\n{title}, test split\n{format_table(results)}")
    if epochs_to_choose_among(results):
        where = VALIDATION_SPLITS.get(results["protocol"], results["protocol"])
        print(f"\nbest over validation epochs (validation: {where})\n{format_table(results, 'best')}")
    if defects := format_defect_table(results):
        print(f"\nper defect type (test split: the normal test images vs each type's images)\n{defects}")
    print(f"results: {output_dir / 'results.json'}")
    if not in_multirun():  # a sweep's ending is its own, once: fod_lightning.launch.sweep_callback
        summarize_and_log(output_dir, wandb="wandb" in (cfg.get("logger") or {}), show=False)


def epochs_to_choose_among(results: dict) -> bool:
    """Whether some category was validated over more than one epoch (a model fitted in one pass has one)."""
    return any((c.get("epochs") or 0) > 1 for c in results["categories"].values() if isinstance(c, dict))
