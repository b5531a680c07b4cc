"""LightningModule around the pure torch FOD model."""

from collections.abc import Callable, Mapping

import torch
from lightning import LightningModule

from fod_lightning.data.batch import Batch
from fod_lightning.errors import ConfigError, FODUserError
from fod_lightning.metrics import AnomalyMetrics
from fod_lightning.metrics.thresholds import CalibrationSettings, normal_thresholds
from fod_lightning.models.base import AnomalyPrediction
from fod_lightning.models.fod.losses import phase_objectives, stage_losses, training_objective
from fod_lightning.models.fod.model import FOD
from fod_lightning.models.fod.reference import mean_feature_maps
from fod_lightning.training.feature_cache import FeatureCache, compute_maps, file_identity

EVAL_STAGES = ("val", "test")


class NonFiniteLossError(FODUserError, FloatingPointError):
    """The training loss is NaN or infinite."""


CHECKPOINT_FORMAT = 1  # version of the "fod" entry of checkpoints


class FODLitModule(LightningModule):
    """Trains FOD for one category; evaluates image/pixel AUROC, pixel AUPRO and F1-max.

    The authors back-propagate, per stage, the target-phase loss and then the correlation-phase loss
    and step once. The stages share no parameters and gradients add up, so one backward of the sum
    over stages and phases with one optimizer step gives the same gradients (tested).

    A checkpoint rebuilds the module alone (``FODLitModule.load_from_checkpoint(path)`` or
    :func:`fod_lightning.load`): it holds the net's config, the data contract (image size, resize rule,
    normalisation), what it was fitted on, the reference features and the calibrated thresholds.

    Args:
        net: the torch model (built by Hydra from ``model.net``), or its saved config.
        optimizer: partial optimizer factory, finished with the trainable parameters (None: the
            authors' Adam, lr 1e-4).
        lambda1, lambda2: discrepancy and entropy weights (0.5, 0.5).
        pixel_thresholds: None for exact pixel metrics, or K for binned ones over ``pixel_score_range``
            (constant memory; see :class:`fod_lightning.metrics.AnomalyMetrics`).
        feature_cache: ``memory`` (default) computes the training images' backbone features once per
            category when nothing augments them, ``disk`` also keeps them in ``feature_cache_dir`` for
            later runs, ``off`` runs the backbone on every step (see :mod:`fod_lightning.training.feature_cache`).
        calibration: how the saved decision thresholds are chosen (:mod:`fod_lightning.metrics.thresholds`).
        legacy_zero_grad: reproduce the authors' torch-1.13 dynamics: one optimizer step per stage after
            ``zero_grad(set_to_none=False)``, so each step also gives the other stage a momentum-only
            Adam update (their ``zero_grad()`` zero-filled gradients instead of clearing them).
    """

    def __init__(
        self,
        net: FOD | Mapping,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        lambda1: float = 0.5,
        lambda2: float = 0.5,
        pixel_thresholds: int | None = None,
        pixel_score_range: tuple[float, float] = (0.0, 1.0),
        feature_cache: str = "memory",
        feature_cache_dir: str | None = None,
        calibration: Mapping | None = None,
        legacy_zero_grad: bool = False,
    ) -> None:
        super().__init__()
        # plain types keep checkpoints weights_only-loadable
        pixel_score_range = tuple(float(v) for v in pixel_score_range)
        calibration = dict(calibration or {})
        self.calibration = CalibrationSettings(**calibration)
        # logger=False: the run entry logs the whole resolved config once (no flat copies of these keys)
        self.save_hyperparameters(ignore=["net", "optimizer"], logger=False)
        self.net = net if isinstance(net, FOD) else FOD.from_config(dict(net))
        self.hparams["net"] = self.net.config  # what load_from_checkpoint rebuilds the net from
        self.optimizer_factory = optimizer
        self.automatic_optimization = not legacy_zero_grad
        self.feature_cache = FeatureCache(feature_cache, feature_cache_dir)
        self.metrics = torch.nn.ModuleDict()
        self.best: dict[str, tuple[float, int]] = {}
        self.val_pixel_threshold: float | None = None
        self.val_thresholds: dict | None = None  # F1-max thresholds of the last validation (val_f1)
        self.contract: dict | None = None  # the data contract (see AnomalyDataModule.contract)
        self.fitted_on: dict | None = None
        self.thresholds: dict | None = None
        self._calibrated_step: int | None = None

    def setup(self, stage: str) -> None:
        # Pixel metrics only where the data has masks (classification-only folders have none).
        datamodule = getattr(self.trainer, "datamodule", None)
        has_masks = getattr(datamodule, "has_masks", True)
        for split in EVAL_STAGES:
            if split not in self.metrics or self.metrics[split].pixel_metrics != has_masks:
                self.metrics[split] = AnomalyMetrics(
                    has_masks, self.hparams.pixel_thresholds, self.hparams.pixel_score_range
                ).to(self.device)

    # ----------------------------------------------------------------------------------- training
    def on_fit_start(self) -> None:
        datamodule = self.trainer.datamodule
        self.check_normalisation(datamodule)
        self.calibration.check_protocol(datamodule.val_protocol)
        self.contract, self.fitted_on = datamodule.contract, datamodule.fitted_on
        maps = None
        if self.feature_cache.enabled and datamodule.training_images_fixed:
            maps = self.training_features()
            datamodule.use_train_features(maps)
        if not self.net.reference.is_set:
            # the cached features are those of the same images: their mean is the reference
            mean = [m.double().mean(dim=0) for m in maps] if maps is not None else self.reference_maps()
            # Under DDP every rank uses rank zero's maps, bit for bit.
            self.net.reference.set(self.trainer.strategy.broadcast([m.float().cpu() for m in mean], src=0))

    def training_features(self) -> list[torch.Tensor]:
        """Pooled backbone maps (N, C, h, w) of every image of the reference split, once per category."""
        datamodule = self.trainer.datamodule
        images = [s.image_path for s in datamodule.split("reference").samples]
        backbone = self.net.backbone
        settings = {
            "backbone": backbone.name,
            "strides": list(backbone.strides),
            "weights": file_identity(backbone.weights_file) if backbone.weights_file else backbone.weights_source,
            "image_size": datamodule.image_size,
            "resize": datamodule.resize,
            "mean": list(datamodule.mean),
            "std": list(datamodule.std),
        }
        batches = (b.image.to(self.device) for b in datamodule.reference_dataloader())
        return self.feature_cache.features(images, settings, lambda: compute_maps(batches, self.net.pooled_features))

    @torch.no_grad()
    def reference_maps(self) -> list[torch.Tensor]:
        """Mean pooled maps (C, h, w) of every normal training image (unsharded: each process sees all)."""
        datamodule = self.trainer.datamodule
        images = (b.image.to(self.device) for b in datamodule.reference_dataloader())
        return mean_feature_maps(images, self.net.pooled_features)

    def check_normalisation(self, datamodule) -> None:
        """The data must be normalised as the backbone's weights expect (the data contract)."""
        backbone = self.net.backbone
        if tuple(datamodule.mean) != tuple(backbone.mean) or tuple(datamodule.std) != tuple(backbone.std):
            raise ConfigError(
                f"data normalises with mean {list(datamodule.mean)} std {list(datamodule.std)} but backbone "
                f"{backbone.name} expects mean {list(backbone.mean)} std {list(backbone.std)}: set data.mean/std "
                "to model.net.backbone.mean/std (the run config does this by default)"
            )

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        maps = batch.features if batch.features is not None else self.net.pooled_features(batch.image)
        config = self.net.config
        correlation = config["with_intra"] or config["with_inter"]
        objectives = []
        for i, stage_maps in enumerate(maps):
            out = self.net.forward_stage(i, stage_maps)
            losses = stage_losses(out.reconstruction, out.tokens, out.intra, out.inter)
            loss1, loss2 = phase_objectives(losses, self.hparams.lambda1, self.hparams.lambda2)
            objectives.append(training_objective(losses, loss1, loss2, correlation))
            if not self.automatic_optimization:
                self.legacy_stage_step(objectives[-1])
            parts = {f"train/stage{i}/{k}": v for k, v in losses.items()}
            parts |= {f"train/stage{i}/loss_target_phase": loss1, f"train/stage{i}/loss_correlation_phase": loss2}
            self.log_dict(parts, batch_size=len(batch))
        total = torch.stack(objectives).sum()
        if not torch.isfinite(total):
            raise NonFiniteLossError(
                f"the training loss became {total.item()} at epoch {self.current_epoch}, step {self.global_step}"
                f" (category {(self.fitted_on or {}).get('category')}): the run stopped before saving these weights; "
                "the last good checkpoint is the newest last.ckpt. Lower model.optimizer.lr or check the images"
            )
        self.log("train/loss", total.detach(), prog_bar=True, batch_size=len(batch))
        if self.global_step % self.trainer.log_every_n_steps == 0:
            self.log_dict(self.sigma_statistics(), batch_size=len(batch))
        return total

    def legacy_stage_step(self, objective: torch.Tensor) -> None:
        """The authors' per-stage step under torch 1.13 (forward, backward and step of one stage before the
        next stage's forward): ``zero_grad`` zero-fills gradients that exist, so each step also moves the
        other stage by its Adam momentum (a zero gradient is not skipped)."""
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=False)
        self.manual_backward(objective)
        optimizer.step()

    def sigma_statistics(self) -> dict[str, torch.Tensor]:
        """Mean and std of the learned sigma (rows y, columns x) per stage, layer and branch, last forward."""
        stats = {}
        for i, stage in enumerate(self.net.stages):
            for k, layer in enumerate(stage.encoder.encode_layers):
                for branch, attention in (("intra", layer.self_attention), ("inter", layer.cross_attention)):
                    if attention.last_sigma_stats is not None:
                        (y, x), (y_std, x_std) = attention.last_sigma_stats
                        key = f"sigma/stage{i}/layer{k}/{branch}"
                        stats |= {f"{key}_y": y, f"{key}_x": x, f"{key}_y_std": y_std, f"{key}_x_std": x_std}
        return stats

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.parameters() if p.requires_grad]
        if self.optimizer_factory is None:  # a module rebuilt from a checkpoint alone: the authors' optimizer
            return torch.optim.Adam(params, lr=1e-4)
        return self.optimizer_factory(params=params)

    # --------------------------------------------------------------------------------- evaluation
    def _eval_step(self, batch: Batch, stage: str) -> AnomalyPrediction:
        pred = self.net.predict(batch.image)
        self.metrics[stage].update(pred.image_score, batch.label, pred.anomaly_map, batch.mask)
        return pred

    def _eval_epoch_end(self, stage: str) -> None:
        # The metric states are synchronised across processes inside compute().
        values = self.metrics[stage].compute()
        if stage == "val":  # kept for pictures under from_train (raw map units) and val_f1 calibration
            self.val_pixel_threshold = self.metrics[stage].pixel_threshold
            self.val_thresholds = {"image": self.metrics[stage].image_threshold, "pixel": self.val_pixel_threshold,
                                   "epoch": self.current_epoch}  # fmt: skip
        self.metrics[stage].reset()
        for name, value in values.items():
            self.log(f"{stage}/{name}", value, prog_bar=name.endswith("auroc"))
            if stage == "val" and not self.trainer.sanity_checking:
                key = f"{stage}/{name}"
                if key not in self.best or value > self.best[key][0]:
                    self.best[key] = (float(value), self.current_epoch)
                self.log(f"{stage}/{name}_best", self.best[key][0])

    def validation_step(self, batch: Batch, batch_idx: int) -> AnomalyPrediction:
        return self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: Batch, batch_idx: int) -> AnomalyPrediction:
        return self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    # -------------------------------------------------------------------------------- checkpoints
    def calibrate(self) -> dict | None:
        """Thresholds for the current weights (see :mod:`fod_lightning.metrics.thresholds`), once per step."""
        settings, datamodule = self.calibration, self.trainer.datamodule
        if settings.source == "none" or datamodule is None:
            return None
        if self._calibrated_step == self.global_step and self.thresholds is not None:
            return self.thresholds
        record = {"source": settings.source, "epoch": self.current_epoch, "step": self.global_step}
        if settings.source == "val_f1":
            if self.val_thresholds is None:
                return None
            record |= {**self.val_thresholds, "split": "validation (from_train)"}
        else:
            was_training = self.net.training
            self.net.eval()
            images = (b.image.to(self.device) for b in datamodule.calibration_dataloader())
            found = normal_thresholds(self.net.score_images, images, settings.image_quantile, settings.pixel_quantile)
            self.net.train(was_training)
            record |= found | {"image_quantile": settings.image_quantile, "pixel_quantile": settings.pixel_quantile,
                               "held_out": datamodule.calibration_held_out}  # fmt: skip
        self.thresholds, self._calibrated_step = record, self.global_step
        return record

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["fod_best"] = dict(self.best)
        if self.trainer is not None and self.trainer.state.fn == "fit":
            self.calibrate()
        checkpoint["fod"] = {"format": CHECKPOINT_FORMAT, "contract": self.contract, "fitted_on": self.fitted_on,
                             "thresholds": self.thresholds}  # fmt: skip

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.best = dict(checkpoint.get("fod_best", {}))
        meta = checkpoint.get("fod") or {}
        self.contract, self.fitted_on = meta.get("contract"), meta.get("fitted_on")
        self.thresholds = meta.get("thresholds")
