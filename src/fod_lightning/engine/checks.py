"""What Hydra cannot know about a run config, checked before any model is built (its backbone weights may be
downloaded) and before anything is trained: each problem is one ``ConfigError`` line naming the key, the value
and the fix. Hydra itself reports unknown group options and keys."""

import difflib
import inspect
import math

import hydra
import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from fod_lightning.data.transforms import check_image_size
from fod_lightning.engine.objective import check_objective
from fod_lightning.errors import ConfigError
from fod_lightning.models.backbone import check_backbone_name
from fod_lightning.training.plugins import moved_classes
from fod_lightning.utils.checks import WORKERS, check_count, is_int

TEST_CKPTS = ("last", "best")
KEEP_CHECKPOINTS = ("auto", "all", "last", "none")
MAX_SEED = 2**32 - 1  # numpy's bound, which Lightning's seed_everything enforces


def check_backbone_node(cfg: DictConfig) -> None:
    """``model.net.backbone``, where the model has one, must be a config (the data contract interpolates its mean
    and std)."""
    if "backbone" not in (OmegaConf.select(cfg, "model.net") or {}):
        return
    backbone = OmegaConf.select(cfg, "model.net.backbone")
    if not OmegaConf.is_dict(backbone):
        raise ConfigError(
            f"model.net.backbone={backbone!r} is not a backbone config: choose one with "
            "model/net/backbone=NAME (a slash, e.g. model/net/backbone=wide_resnet50_2) or set model.net.backbone.name"
        )


# Public classes that moved in the layered layout: old `_target_` paths of users' configs get the new one. A model
# slice names its own moved classes in its plugin (fod_lightning.training.plugins).
MOVED_TARGETS = {
    "fod_lightning.callbacks.best_checkpoint.BestMetricCheckpoint":
        "fod_lightning.training.callbacks.best_checkpoint.BestMetricCheckpoint",
    "fod_lightning.callbacks.pictures.TestPictures": "fod_lightning.training.callbacks.pictures.TestPictures",
    "fod_lightning.utils.wandb_mode.wandb_logger": "fod_lightning.reporting.wandb_logger.wandb_logger",
}  # fmt: skip


def check_targets(node: object, key: str = "", moved: dict[str, str] | None = None) -> None:
    """No ``_target_`` of the config (a plain container: ``OmegaConf.to_container(cfg, resolve=False)``) names a class
    at a path it has moved from: one line naming the new path."""
    moved = moved if moved is not None else MOVED_TARGETS | moved_classes()
    if isinstance(node, dict):
        target = node.get("_target_")
        if isinstance(target, str) and target in moved:
            raise ConfigError(f"{key + '.' if key else ''}_target_={target} has moved: use {moved[target]}")
        for child, value in node.items():
            if child != "hydra":
                check_targets(value, f"{key}.{child}" if key else str(child), moved)
    elif isinstance(node, list):
        for i, child in enumerate(node):
            check_targets(child, f"{key}[{i}]", moved)


HYDRA_KEYS = ("_target_", "_partial_", "_convert_", "_recursive_", "_args_")


def check_arguments(node: object, key: str) -> None:
    """Every setting of a node that builds an object (``_target_``) is an argument of what it builds, also one
    added with ``+`` (Hydra adds any key; the constructor would then fail with a traceback): one line naming the key
    and the closest argument. Nested nodes are checked too. ``node``: a plain container (interpolations unresolved)."""
    if not isinstance(node, dict):
        return
    if isinstance(node.get("_target_"), str):
        try:
            target = hydra.utils.get_object(node["_target_"])
            parameters = inspect.signature(target).parameters
        except (ImportError, AttributeError, ValueError, TypeError):
            parameters = {}  # reported when it is built
        accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        if parameters and not accepts_any:
            for name in node:
                if name not in parameters and name not in HYDRA_KEYS:
                    raise ConfigError(f"{key}.{name} is not a setting of {node['_target_'].rpartition('.')[2]}: "
                                      f"{closest(str(name), [p for p in parameters if p != 'self'], key)}")  # fmt: skip
    for name, child in node.items():
        if isinstance(child, dict) and not str(name).startswith("_"):
            check_arguments(child, f"{key}.{name}")


def closest(name: str, names: list[str], key: str) -> str:
    """``did you mean <key>.<closest>?``, or the first few valid names."""
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    if close:
        return f"did you mean {key}.{close[0]}?"
    return f"its settings are {', '.join(names[:8])}{', ...' if len(names) > 8 else ''}"


def check_config(cfg: DictConfig) -> None:
    """Top-level switches, loader sizes, seed, optimizer, training length, the backbone name, the input size, the
    devices and the data root: checked before any model is built."""
    plain = OmegaConf.to_container(cfg, resolve=False)  # keys and targets only: nothing resolved
    check_targets(plain)
    for group in ("model", "data", "trainer", "callbacks", "logger"):
        if plain.get(group) is not None:
            check_arguments(plain[group], group)
    check_objective(cfg.get("optimized_metric"), cfg.data.get("val_protocol", "paper"))
    test_ckpt = cfg.get("test_ckpt", "last")
    if test_ckpt not in TEST_CKPTS:
        raise ConfigError(f"test_ckpt={test_ckpt} is unknown: use last or best")
    if test_ckpt == "best" and not cfg.get("train", True):
        raise ConfigError("test_ckpt=best selects among the checkpoints of a training: with train=false the test "
                          "uses ckpt_path; set test_ckpt=last")  # fmt: skip
    keep = cfg.get("keep_checkpoints", "auto")
    if keep not in KEEP_CHECKPOINTS:
        raise ConfigError(f"keep_checkpoints={keep} is unknown: use one of {', '.join(KEEP_CHECKPOINTS)}")
    if test_ckpt == "best" and keep in ("last", "none"):
        raise ConfigError(f"test_ckpt=best tests a best-epoch checkpoint, which keep_checkpoints={keep} does not keep: "
                          "set keep_checkpoints=all")  # fmt: skip
    monitored = [c.get("monitor") for c in (cfg.get("callbacks") or {}).values()]
    if test_ckpt == "best" and cfg.test_ckpt_metric not in monitored:
        raise ConfigError(f"test_ckpt=best needs a checkpoint callback monitoring test_ckpt_metric="
                          f"{cfg.test_ckpt_metric}: use one of {', '.join(m for m in monitored if m)}")  # fmt: skip
    check_early_stopping(cfg.get("early_stopping_patience"), cfg.test_ckpt_metric, cfg.data.get("val_protocol"))
    split = cfg.data.get("test_split")
    if split in ("private", "private_mixed") and cfg.get("test", True):
        raise ConfigError(
            f"data.test_split={split} has no ground truth (MVTec's evaluation server scores it): run "
            "test=false submission=true for its maps and the server's files, or data.test_split=public"
        )
    check_loaders(cfg.data)
    check_seed(cfg.get("seed"))
    check_optimizer(OmegaConf.select(cfg, "model.optimizer"))
    if cfg.get("train", True):
        check_training_length(cfg.trainer)
        check_best_is_validated(cfg)
    backbone = OmegaConf.select(cfg, "model.net.backbone")
    if backbone is not None:
        check_backbone_name(backbone.name)
    if cfg.data.image_size != "auto":  # auto: resolved from the images by a datamodule that supports it
        check_image_size(cfg.data.image_size, tuple((backbone or {}).get("strides") or ()))
    check_devices(cfg.trainer)
    # Before the model is built (its backbone weights may be downloaded): the data must be there.
    hydra.utils.get_class(cfg.data._target_).check_root(cfg.data.root)


def check_early_stopping(patience: object, metric: str, val_protocol: str | None) -> None:
    """``early_stopping_patience``: null, or a positive number of validations, stopping on held-out validation only."""
    if patience is None:
        return
    check_count("early_stopping_patience", patience, 1, "validations without improvement; null trains for "
                "trainer.max_epochs", 2)  # fmt: skip
    if val_protocol != "from_train":
        raise ConfigError(f"early_stopping_patience stops on test_ckpt_metric={metric}, which under "
                          f"data.val_protocol={val_protocol} is measured on the test split: set "
                          "data.val_protocol=from_train")  # fmt: skip


def check_loaders(data: DictConfig) -> None:
    """Batch sizes and worker counts of the run's DataLoaders."""
    check_count("data.batch_size", data.get("batch_size", 1), 1, "images per training batch", 1)
    check_count("data.eval_batch_size", data.get("eval_batch_size", 1), 1, "images per evaluation batch", 8)
    check_count("data.num_workers", data.get("num_workers", 0), 0, WORKERS, 2)


def check_seed(seed: object) -> None:
    """An integer Lightning's ``seed_everything`` accepts as it is (it would round 3.5, and ``null`` reads 0)."""
    if not (is_int(seed) and 0 <= seed <= MAX_SEED):
        raise ConfigError(f"seed={seed!r} must be an integer from 0 to {MAX_SEED}: e.g. seed=3407 (the authors')")


def check_optimizer(optimizer: DictConfig | None) -> None:
    """A positive learning rate, and settings the optimizer accepts: it is built once on a dummy parameter, so
    that torch's refusal (a beta of 1.5, a negative weight decay, an unknown key) is one line naming
    ``model.optimizer``. ``None``: the module's default Adam."""
    if optimizer is None:
        return
    lr = optimizer.get("lr", 1.0)
    if not (isinstance(lr, int | float) and not isinstance(lr, bool) and math.isfinite(lr) and lr > 0):
        raise ConfigError(f"model.optimizer.lr={lr!r} must be a positive number: e.g. model.optimizer.lr=1e-4 "
                          "(the authors')")  # fmt: skip
    target = optimizer.get("_target_")
    try:
        factory = hydra.utils.instantiate(optimizer)
        factory(params=[torch.nn.Parameter(torch.zeros(1))])
    except (InstantiationException, TypeError, ValueError) as err:
        reason = " ".join(str(err).split(", set env var HYDRA_FULL_ERROR")[0].split())  # Hydra's advice: not here
        raise ConfigError(f"model.optimizer ({target}) refuses its settings: {reason}; fix that key under "
                          "model.optimizer") from err  # fmt: skip


def check_training_length(trainer: DictConfig) -> None:
    """With ``train=true`` the run must train, and end: ``max_epochs=0`` would score an untrained model as a
    result, and ``-1`` (no epoch limit) needs ``max_steps`` or ``max_time``. ``null`` is Lightning's default."""
    epochs, steps, time = trainer.get("max_epochs"), trainer.get("max_steps", -1), trainer.get("max_time")
    if steps not in (None, -1) and not (is_int(steps) and steps >= 1):
        raise ConfigError(
            f"trainer.max_steps={steps!r} must be a positive integer, or -1 (no step limit); to score a fitted model "
            "without training: train=false ckpt_path=FILE"
        )
    if epochs is None or (is_int(epochs) and epochs >= 1):
        return
    if is_int(epochs) and epochs == 0:
        raise ConfigError(
            "trainer.max_epochs=0 trains nothing, so the test would score an untrained model: set "
            "trainer.max_epochs >= 1, or score a fitted model with train=false ckpt_path=FILE"
        )
    if not (is_int(epochs) and epochs == -1):
        raise ConfigError(
            f"trainer.max_epochs={epochs!r} must be a positive integer (or -1, no epoch limit, with trainer.max_steps "
            "or trainer.max_time bounding the run): e.g. trainer.max_epochs=100"
        )
    if steps in (None, -1) and time is None:
        raise ConfigError(
            "trainer.max_epochs=-1 (no epoch limit) would train without end: bound the run with trainer.max_steps "
            "or trainer.max_time, or set trainer.max_epochs >= 1"
        )


def check_best_is_validated(cfg: DictConfig) -> None:
    """``test_ckpt=best`` needs a validated epoch: refused before fitting, not found missing after it."""
    if cfg.get("test_ckpt", "last") != "best":
        return
    needs = f"test_ckpt=best needs a validation epoch measuring test_ckpt_metric={cfg.test_ckpt_metric}"
    every, epochs, limit = (cfg.trainer.get(k) for k in ("check_val_every_n_epoch", "max_epochs", "limit_val_batches"))
    if limit == 0 and not isinstance(limit, bool):
        raise ConfigError(f"{needs}, but trainer.limit_val_batches={limit!r} runs none: raise it, or test_ckpt=last")
    if is_int(every) and is_int(epochs) and every > epochs >= 1:
        raise ConfigError(
            f"{needs}, but trainer.check_val_every_n_epoch={every} > trainer.max_epochs={epochs} runs none: set "
            "trainer.check_val_every_n_epoch <= trainer.max_epochs, or test_ckpt=last"
        )


def check_devices(trainer: DictConfig) -> None:
    """An accelerator asked for must exist, as many devices as asked (one line, not Lightning's exception)."""
    accelerator, devices = str(trainer.get("accelerator", "auto")).lower(), trainer.get("devices", 1)
    if accelerator in ("gpu", "cuda"):
        found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    elif accelerator == "mps":
        found = int(torch.backends.mps.is_available())
    else:
        return
    wanted = len(devices) if OmegaConf.is_list(devices) else devices if isinstance(devices, int) and devices > 0 else 1
    if found < wanted:
        fix = "use trainer=cpu or trainer.accelerator=auto" + (f", or trainer.devices={found}" if found else "")
        raise ConfigError(f"trainer.accelerator={accelerator} asks for {wanted} device(s) but torch finds {found} "
                          f"on this machine: {fix}")  # fmt: skip
