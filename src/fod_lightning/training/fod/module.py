"""FOD's LightningModule: the authors' training of the pure torch FOD model."""

from collections.abc import Callable, Mapping

import torch

from fod_lightning.data.batch import Batch
from fod_lightning.data.contract import DataContract
from fod_lightning.errors import ConfigError, UserError
from fod_lightning.models.fod.losses import phase_objectives, stage_losses, training_objective
from fod_lightning.models.fod.model import FOD
from fod_lightning.models.fod.reference import mean_feature_maps
from fod_lightning.training.fod.branch_analysis import BranchAnalysis
from fod_lightning.training.fod.feature_cache import FeatureCache, compute_maps, file_identity
from fod_lightning.training.fod.features import FeatureBatch, FeatureDataset
from fod_lightning.training.module import AnomalyModule
from fod_lightning.utils.progress import with_progress


class NonFiniteLossError(UserError, FloatingPointError):
    """The training loss is NaN or infinite."""


class FODLitModule(AnomalyModule):
    """Trains FOD for one category (evaluation, thresholds and checkpoints: :class:`AnomalyModule`).

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
            later runs, ``off`` runs the backbone on every step (see :mod:`fod_lightning.training.fod.feature_cache`).
        calibration: how the saved decision thresholds are chosen (:mod:`fod_lightning.metrics.thresholds`).
        legacy_zero_grad: reproduce the authors' torch-1.13 dynamics: one optimizer step per stage after
            ``zero_grad(set_to_none=False)``, so each step also gives the other stage a momentum-only
            Adam update (their ``zero_grad()`` zero-filled gradients instead of clearing them).
        save_backbone: checkpoints also hold the frozen backbone (see :class:`AnomalyModule`).
        branch_analysis: also measure, at each validation, every branch's score of every stage on its own
            (:mod:`fod_lightning.training.fod.branch_analysis`): a study tool.
    """

    net_class = FOD

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
        contract: DataContract | None = None,
        fitted_on: dict | None = None,
        save_backbone: bool = False,
        branch_analysis: bool = False,
        aupro_fpr_limit: float = 0.3,
    ) -> None:
        super().__init__(net, pixel_thresholds, pixel_score_range, calibration, contract, fitted_on,
                         save_backbone=save_backbone, aupro_fpr_limit=aupro_fpr_limit)  # fmt: skip
        self.optimizer_factory = optimizer
        self.automatic_optimization = not legacy_zero_grad
        self.feature_cache = FeatureCache(feature_cache, feature_cache_dir)
        self._served_maps: list[torch.Tensor] | None = None  # computed by fit_start, served by training_dataset
        self.branch_analysis = BranchAnalysis(len(self.net.stages)) if branch_analysis else None

    def check_setting(self, setting: str) -> None:
        if setting == "unified" and self.net.config["reference_mode"] == "mean" and self.net.config["with_inter"]:
            raise ConfigError(
                "model.net.reference_mode=mean is one mean reference per category, which the unified setting (the "
                "category never given) has not: set model.net.reference_mode=retrieved (the default of "
                "setting=unified) or clustered"
            )

    # -------------------------------------------------------------------------------- evaluation
    def validation_step(self, batch: Batch, batch_idx: int):
        pred = super().validation_step(batch, batch_idx)
        if self.branch_analysis is not None and not self.trainer.sanity_checking:
            with torch.no_grad():
                self.branch_analysis.update(self.net, batch.image, batch.label)
        return pred

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.branch_analysis is not None and not self.trainer.sanity_checking:
            self.log_dict(self.branch_analysis.compute())

    # ----------------------------------------------------------------------------------- training
    def fit_start(self, datamodule) -> None:
        """The training images' backbone features, once per category when nothing augments them, and the
        reference features: the positional mean of the training images' pooled maps."""
        maps = None
        if self.feature_cache.enabled and not datamodule.augment:  # a training image always gives the same input
            maps = self.training_features()
        self._served_maps = maps  # served as the training batches (training_dataset)
        needs_maps = [part for part in (self.net.memory, self.net.retrieval) if part is not None and not part.is_set]
        if needs_maps and maps is None:
            maps = self.training_features_uncached()
        for part in needs_maps:  # the memory of normal patches, the retrievable references (options)
            part.set(self.trainer.strategy.broadcast([m.float().cpu() for m in maps], src=0))
        if not self.net.reference.is_set:
            # the cached features are those of the same images: their mean is the reference
            mean = [m.double().mean(dim=0) for m in maps] if maps is not None else self.reference_maps()
            # Under DDP every rank uses rank zero's maps, bit for bit.
            self.net.reference.set(self.trainer.strategy.broadcast([m.float().cpu() for m in mean], src=0))

    def training_dataset(self, datamodule) -> FeatureDataset | None:
        """The cached features of the training images (the ``reference`` split's, in its order), when they were
        computed: training reads them instead of decoding images and running the backbone every epoch."""
        maps, self._served_maps = self._served_maps, None
        return None if maps is None else FeatureDataset(maps, datamodule.split("reference").samples)

    def training_features(self) -> list[torch.Tensor]:
        """Pooled backbone maps (N, C, h, w) of every image of the reference split, once per category."""
        datamodule = self.trainer.datamodule
        images = [s.image_path for s in datamodule.split("reference").samples]
        backbone = self.net.backbone
        settings = {
            "backbone": backbone.name,
            "strides": list(backbone.strides),
            "weights": file_identity(backbone.weights_file) if backbone.weights_file else backbone.weights_source,
            **datamodule.contract.to_dict(),
        }
        compute = lambda: compute_maps(self.reference_batches(), self.net.pooled_features)  # noqa: E731
        return self.feature_cache.features(images, settings, compute)

    def training_features_uncached(self) -> list[torch.Tensor]:
        """Pooled backbone maps (N, C, h, w) of every image of the reference split, computed now."""
        return compute_maps(self.reference_batches(), self.net.pooled_features)

    def reference_batches(self):
        """The normal training images, once, in order, on the model's device, with progress lines."""
        loader = self.trainer.datamodule.reference_dataloader()
        what = "FOD: backbone features of the normal training images (batches)"
        return (b.image.to(self.device) for b in with_progress(loader, what, len(loader)))

    @torch.no_grad()
    def reference_maps(self) -> list[torch.Tensor]:
        """Mean pooled maps (C, h, w) of every normal training image (unsharded: each process sees all)."""
        return mean_feature_maps(self.reference_batches(), self.net.pooled_features)

    def training_step(self, batch: Batch | FeatureBatch, batch_idx: int) -> torch.Tensor:
        maps = batch.features if isinstance(batch, FeatureBatch) else self.net.pooled_features(batch.image)
        config = self.net.config
        correlation = config["with_intra"] or config["with_inter"]
        objectives = []
        references = self.net.references_of(maps)
        for i, stage_maps in enumerate(maps):
            out = self.net.forward_stage(i, stage_maps, references=references)
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
