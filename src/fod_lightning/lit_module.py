"""LightningModule around the pure torch FOD model."""

from collections.abc import Callable

import torch
from lightning import LightningModule

from fod_lightning.data.batch import Batch
from fod_lightning.feature_cache import FeatureCache, compute_maps, file_identity
from fod_lightning.metrics import AnomalyMetrics
from fod_lightning.models.backbone import FeatureExtractor
from fod_lightning.models.fod import FOD, AnomalyPrediction
from fod_lightning.models.losses import phase_objectives, stage_losses, training_objective
from fod_lightning.models.reference import mean_feature_maps

EVAL_STAGES = ("val", "test")


class FODLitModule(LightningModule):
    """Trains FOD for one category; evaluates image/pixel AUROC, pixel AUPRO and F1-max.

    The authors back-propagate, per stage, the target-phase loss and then the correlation-phase loss
    and step once. The stages share no parameters and gradients add up, so one backward of the sum
    over stages and phases with one optimizer step gives the same gradients (tested).

    Args:
        backbone: frozen feature extractor (built by Hydra from ``model/backbone``).
        optimizer: partial optimizer factory, finished with the trainable parameters.
        lambda1, lambda2: discrepancy and entropy weights (0.5, 0.5).
        pixel_thresholds: None for exact pixel metrics, or K for binned ones over ``pixel_score_range``
            (constant memory; see :class:`fod_lightning.metrics.AnomalyMetrics`).
        feature_cache: ``memory`` (default) computes the training images' backbone features once per
            category when nothing augments them, ``disk`` also keeps them in ``feature_cache_dir`` for
            later runs, ``off`` runs the backbone on every step (see :mod:`fod_lightning.feature_cache`).
        Remaining arguments: see :class:`fod_lightning.models.FOD`.
    """

    def __init__(
        self,
        backbone: FeatureExtractor,
        optimizer: Callable[..., torch.optim.Optimizer],
        d_models: tuple[int, ...] = (256, 512),
        n_heads: int = 8,
        depth: int = 3,
        ffn_ratio: int = 4,
        dropout: float = 0.0,
        with_intra: bool = True,
        with_inter: bool = True,
        attention_out_proj: bool = False,
        score: str = "auto",
        blur_sigma: float = 4.0,
        lambda1: float = 0.5,
        lambda2: float = 0.5,
        pixel_thresholds: int | None = None,
        pixel_score_range: tuple[float, float] = (0.0, 1.0),
        block_elements: int | None = None,
        compile_correlation: bool = False,
        feature_cache: str = "memory",
        feature_cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        # plain types keep checkpoints weights_only-loadable
        d_models = tuple(int(d) for d in d_models)
        pixel_score_range = tuple(float(v) for v in pixel_score_range)
        # logger=False: the run entry logs the whole resolved config once (no flat copies of these keys)
        self.save_hyperparameters(ignore=["backbone", "optimizer"], logger=False)
        self.optimizer_factory = optimizer
        self.net = FOD(
            backbone, d_models, n_heads, depth, ffn_ratio, dropout, with_intra, with_inter,
            attention_out_proj, score, blur_sigma, block_elements, compile_correlation,
        )  # fmt: skip
        self.feature_cache = FeatureCache(feature_cache, feature_cache_dir)
        self.metrics = torch.nn.ModuleDict()
        self.best: dict[str, tuple[float, int]] = {}
        self.val_pixel_threshold: float | None = None

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
            "normalisation": "imagenet",
        }
        batches = (b.image.to(self.device) for b in datamodule.reference_dataloader())
        return self.feature_cache.features(images, settings, lambda: compute_maps(batches, self.net.pooled_features))

    @torch.no_grad()
    def reference_maps(self) -> list[torch.Tensor]:
        """Mean pooled maps (C, h, w) of every normal training image (unsharded: each process sees all)."""
        datamodule = self.trainer.datamodule
        images = (b.image.to(self.device) for b in datamodule.reference_dataloader())
        return mean_feature_maps(images, self.net.pooled_features)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        maps = batch.features if batch.features is not None else self.net.pooled_features(batch.image)
        total = maps[0].new_zeros(())
        correlation = self.hparams.with_intra or self.hparams.with_inter
        for i, out in enumerate(self.net.forward_features(maps)):
            losses = stage_losses(out.reconstruction, out.tokens, out.intra, out.inter)
            loss1, loss2 = phase_objectives(losses, self.hparams.lambda1, self.hparams.lambda2)
            total = total + training_objective(losses, loss1, loss2, correlation)
            parts = {f"train/stage{i}/{k}": v for k, v in losses.items()}
            parts |= {f"train/stage{i}/loss_target_phase": loss1, f"train/stage{i}/loss_correlation_phase": loss2}
            self.log_dict(parts, batch_size=len(batch))
        self.log("train/loss", total, prog_bar=True, batch_size=len(batch))
        if self.global_step % self.trainer.log_every_n_steps == 0:
            self.log_dict(self.sigma_statistics(), batch_size=len(batch))
        return total

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
        return self.optimizer_factory(params=[p for p in self.parameters() if p.requires_grad])

    # --------------------------------------------------------------------------------- evaluation
    def _eval_step(self, batch: Batch, stage: str) -> AnomalyPrediction:
        pred = self.net.predict(batch.image)
        self.metrics[stage].update(pred.image_score, batch.label, pred.anomaly_map, batch.mask)
        return pred

    def _eval_epoch_end(self, stage: str) -> None:
        # The metric states are synchronised across processes inside compute().
        values = self.metrics[stage].compute()
        if stage == "val":  # kept for pictures under from_train (raw map units)
            self.val_pixel_threshold = self.metrics[stage].pixel_threshold
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

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["fod_best"] = dict(self.best)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.best = dict(checkpoint.get("fod_best", {}))
