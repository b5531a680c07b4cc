"""The LightningModule side every anomaly model shares: evaluation, thresholds, data contract, checkpoints."""

import importlib
import logging
import sys
import time
from collections.abc import Mapping

import torch
from lightning import LightningModule
from omegaconf import OmegaConf
from torch.utils.data import Dataset

from fod_lightning.data.batch import Batch
from fod_lightning.data.contract import DataContract
from fod_lightning.errors import CheckpointError, ConfigError
from fod_lightning.metrics.evaluator import Evaluator
from fod_lightning.metrics.thresholds import CalibrationSettings, Thresholds
from fod_lightning.models.backbone import FeatureExtractor
from fod_lightning.models.base import AnomalyNet, AnomalyPrediction
from fod_lightning.training.checkpoint_format import BEST_KEY, META_KEY, CheckpointRecord, metadata_entry
from fod_lightning.training.plugins import moved_classes
from fod_lightning.training.scored_validation import ScoredValidation
from fod_lightning.utils.progress import with_progress

log = logging.getLogger(__name__)
BACKBONE_PREFIX = "net.backbone."  # the frozen backbone's weights in the state dict


class AnomalyModule(LightningModule):
    """Base of every model's LightningModule. A subclass names its pure torch net's class (``net_class``, an
    :class:`~fod_lightning.models.base.AnomalyNet`) and adds its training (``training_step`` and
    ``configure_optimizers``; or, fitted from statistics, :class:`~fod_lightning.training.statistics.StatisticsModule`).
    Everything else is here:

    - validation and test: ``net.score_images`` on each batch into the :class:`Evaluator` (metrics, best epochs,
      per-defect numbers; :meth:`results` is what a job records);
    - ``thresholds``: the one :class:`Thresholds` component, calibrated for the weights each checkpoint holds;
    - ``contract``: the :class:`DataContract` of the data it was fitted on, checked against the net's normalisation;
    - checkpoints that rebuild alone (:func:`fod_lightning.load`): the module's class, the net's config, the
      contract, what it was fitted on and the thresholds.

    Args:
        net: the torch model, or its config (``net.config``: a checkpoint's ``hyper_parameters["net"]``).
        pixel_thresholds: None for exact pixel metrics, or K for binned ones over ``pixel_score_range``.
        calibration: how the saved decision thresholds are chosen (:class:`CalibrationSettings`).
        contract, fitted_on, thresholds: of a model fitted elsewhere (an authors' checkpoint); a fit sets them.
        save_backbone: checkpoints hold the frozen backbone's weights too (portable); by default they hold what the
            model learned and the backbone's fingerprint, and the backbone is rebuilt from the config.
        aupro_fpr_limit: the false-positive rate pixel AUPRO integrates to (0.3; MVTec AD 2's server: 0.05).
    """

    net_class: type[AnomalyNet] = AnomalyNet  # what a saved net config rebuilds

    def __init__(
        self,
        net: AnomalyNet | Mapping,
        pixel_thresholds: int | None = None,
        pixel_score_range: tuple[float, float] = (0.0, 1.0),
        calibration: Mapping | None = None,
        contract: DataContract | None = None,
        fitted_on: dict | None = None,
        thresholds: dict | None = None,
        save_backbone: bool = False,
        aupro_fpr_limit: float = 0.3,
    ) -> None:
        super().__init__()
        self.net = net if isinstance(net, AnomalyNet) else self.net_class.from_config(dict(net))
        # The arguments of this and every subclass constructor (Lightning reads them from the call frames), with the
        # net's config in place of the net: load_from_checkpoint rebuilds the module from them. logger=False: the
        # run logs the whole resolved config once.
        self.save_hyperparameters(ignore=["net", "optimizer", "contract", "fitted_on", "thresholds"], logger=False)
        self.hparams.update({k: plain(v) for k, v in self.hparams.items()} | {"net": self.net.config})
        self.evaluator = Evaluator(pixel_thresholds, pixel_score_range, aupro_fpr_limit)
        self.scored_validation = ScoredValidation()  # the test of the final model reads its final validation
        self.thresholds = Thresholds(CalibrationSettings(**dict(calibration or {})), thresholds)
        self.contract = contract
        self.fitted_on = fitted_on

    # ------------------------------------------------------------------------------------------ fitting
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        self.evaluator.setup(getattr(datamodule, "has_masks", True), self.device)

    def on_fit_start(self) -> None:
        datamodule = self.trainer.datamodule
        contract = datamodule.contract
        self.check_normalisation(contract)
        self.thresholds.settings.check_protocol(datamodule.val_protocol)
        self.contract, self.fitted_on = contract, datamodule.fitted_on
        self.fit_start(datamodule)
        if (served := self.training_dataset(datamodule)) is not None:
            datamodule.serve_training(served)

    def fit_start(self, datamodule) -> None:
        """What a model fits from its data before the first training step (reference features, a memory bank)."""

    def training_dataset(self, datamodule) -> Dataset | None:
        """A model that serves its own training batches opts in here (FOD: backbone features it computed once, in
        memory): a dataset whose ``__getitems__`` returns a collated batch. None (default): the datamodule's
        images."""
        return None

    def check_setting(self, setting: str) -> None:
        """Refuse a setting (``separate`` or ``unified``) the model's settings make no sense in: one line naming the
        key and the fix (before anything is fitted)."""

    @property
    def fitted_in_one_pass(self) -> bool:
        """Fitted in one pass over the training images (no epochs to choose among): one checkpoint, no best epoch."""
        return False

    def check_normalisation(self, contract: DataContract) -> None:
        """The data must be normalised as the net's backbone expects (the data contract)."""
        expected = self.net.normalisation
        if expected is None or (contract.mean, contract.std) == expected:
            return
        name = getattr(getattr(self.net, "backbone", None), "name", "the backbone")
        raise ConfigError(
            f"data normalises with mean {list(contract.mean)} std {list(contract.std)} but backbone {name} expects "
            f"mean {list(expected[0])} std {list(expected[1])}: set data.mean/std to model.net.backbone.mean/std "
            "(the run config does this by default)"
        )

    # --------------------------------------------------------------------------------------- evaluation
    def eval_step(self, batch: Batch, stage: str) -> AnomalyPrediction:
        found = self.scored_validation.find(batch.path) if stage == "test" else None
        if found is not None:  # the final validation scored these images with these weights
            pred, seconds = found
        else:
            start = time.perf_counter()
            pred = self.net.predict(batch.image)
            if pred.image_score.is_cuda:
                torch.cuda.synchronize(pred.image_score.device)
            seconds = time.perf_counter() - start
            if stage == "val" and not self.trainer.sanity_checking and self.validates_on_test_split:
                self.scored_validation.keep(batch.path, pred, seconds)
        self.evaluator.update(stage, pred.image_score, pred.anomaly_map, batch, seconds)
        return pred

    def eval_epoch_end(self, stage: str) -> None:
        sanity = self.trainer.sanity_checking
        values = self.evaluator.compute(stage, self.current_epoch, track_best=not sanity)
        if stage == "val":  # for pictures under from_train and the val_f1 calibration
            self.thresholds.record_validation(**self.evaluator.f1_thresholds, epoch=self.current_epoch)
        # Under the paper protocol the validation split is the test split: the progress bar says so (the logged key
        # stays val/..., which test_ckpt_metric and optimized_metric name)
        test_as_val = stage == "val" and getattr(self.trainer.datamodule, "val_protocol", "paper") == "paper"
        for name, value in values.items():
            shown = name.endswith("auroc")
            self.log(f"{stage}/{name}", value, prog_bar=shown and not test_as_val)
            if shown and test_as_val:
                self.log(f"test_as_val/{name}", value, prog_bar=True, logger=False)
            if stage == "val" and not sanity:
                self.log(f"{stage}/{name}_best", self.evaluator.best[f"{stage}/{name}"][0])

    @property
    def validates_on_test_split(self) -> bool:
        """The paper protocol: each validation scores the test split."""
        return getattr(getattr(self.trainer, "datamodule", None), "val_protocol", None) == "paper"

    def on_validation_epoch_start(self) -> None:
        self.scored_validation.forget()

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        self.scored_validation.forget()  # the weights change

    def validation_step(self, batch: Batch, batch_idx: int) -> AnomalyPrediction:
        return self.eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self.eval_epoch_end("val")

    def on_test_epoch_start(self) -> None:
        self.evaluator.start("test")
        self.scored_validation.start_test()

    def test_step(self, batch: Batch, batch_idx: int) -> AnomalyPrediction:
        return self.eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self.eval_epoch_end("test")
        reused, total = self.scored_validation.reused, self.scored_validation.reused + self.scored_validation.scored
        if reused:
            log.info(
                "%d of %d batches of the test split: the final validation's scores (the same weights and images),"
                " not scored again",
                reused,
                total,
            )

    def results(self) -> dict:
        """Everything a job records of this model (see :meth:`Evaluator.results`)."""
        return self.evaluator.results()

    # -------------------------------------------------------------------------------------- checkpoints
    def calibrate(self, datamodule, epoch: int, step: int) -> dict | None:
        """Thresholds for the current weights (those of the checkpoint of ``epoch`` and ``step``), on the datamodule's
        calibration images (held-out normal images): an explicit step once fitting has ended, for the checkpoints that
        are kept (:mod:`fod_lightning.training.finish`), never a side effect of saving."""

        def batches():
            loader = datamodule.calibration_dataloader()
            what = f"calibrating the thresholds of epoch {epoch} on normal images (batches)"
            return (b.image.to(self.device) for b in with_progress(loader, what, len(loader)))

        was_training = self.net.training
        self.net.eval()
        try:
            return self.thresholds.calibrate(self.net.score_images, batches, datamodule.calibration_held_out,
                                             epoch, step)  # fmt: skip
        finally:
            self.net.train(was_training)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[BEST_KEY] = dict(self.evaluator.best)
        cls = type(self)
        checkpoint[META_KEY] = metadata_entry(f"{cls.__module__}.{cls.__qualname__}",
                                              self.contract.to_dict() if self.contract else None, self.fitted_on,
                                              self.thresholds.calibrated, self.thresholds.validation)  # fmt: skip
        backbone = getattr(self.net, "backbone", None)
        if isinstance(backbone, FeatureExtractor):
            held = bool(self.hparams.get("save_backbone", False))
            checkpoint[META_KEY]["backbone"] = {"fingerprint": backbone.fingerprint(), "in_checkpoint": held}
            if not held:
                checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items()
                                            if not k.startswith(BACKBONE_PREFIX)}  # fmt: skip

    @classmethod
    def from_record(cls, record: CheckpointRecord) -> "AnomalyModule":
        """The fitted module of a checkpoint already read (as ``load_from_checkpoint``, without reading it again),
        in eval mode. A backbone held in the file is built without weights: the state dict brings them."""
        hyper_parameters = dict(record.hyper_parameters)
        if record.backbone_in_file():
            net = record.net
            hyper_parameters["net"] = {**net, "backbone": {**net["backbone"], "weights": "random",
                                                           "checkpoint_path": None}}  # fmt: skip
        model = cls(**hyper_parameters)
        model.load_record(record)
        return model.eval()

    def load_record(self, record: CheckpointRecord) -> None:
        """A checkpoint's weights and what the module keeps beside them (the file was read already)."""
        self.load_state_dict(self.restore(record), strict=True)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = self.restore(CheckpointRecord.of(checkpoint))  # Lightning loads it next

    def load_state_dict(self, state_dict, *args, **kwargs):
        self.scored_validation.forget()  # other weights (a checkpoint Lightning restores comes through here too)
        return super().load_state_dict(state_dict, *args, **kwargs)

    def restore(self, record: CheckpointRecord) -> dict:
        """What the module keeps beside its weights, from a checkpoint's record; returns the state dict to load: the
        record's, with the backbone rebuilt from the config when the file does not hold it (checked against the
        fingerprint it was fitted with). The record is left as it was."""
        if self._trainer is not None and self._trainer.state.fn == "fit":  # resuming: the run's best epochs so far
            self.evaluator.best = dict(record.best)
        self.contract = DataContract.from_dict(record.contract) if record.contract else None
        self.fitted_on = record.fitted_on
        self.thresholds.calibrated = record.thresholds
        self.thresholds.validation = record.validation_thresholds
        saved = record.backbone or {}
        if saved and not saved.get("in_checkpoint", True):  # the backbone rebuilt from the config must be the one
            backbone = self.net.backbone
            if backbone.fingerprint() != saved["fingerprint"]:
                theirs, ours = saved["fingerprint"][:12], backbone.fingerprint()[:12]
                raise CheckpointError(
                    f"the checkpoint was fitted on other {backbone.name} weights (fingerprint {theirs}) than "
                    f"model/net/backbone gives now ({ours}, weights "
                    f"{backbone.weights_source}): give the weights it was fitted with (model.net.backbone.weights or "
                    ".checkpoint_path), or use a checkpoint saved with model.save_backbone=true"
                )
            state = {BACKBONE_PREFIX + k: v for k, v in backbone.state_dict().items()}
            return {**record.contents["state_dict"], **state}
        return record.contents["state_dict"]


def module_class(path: str) -> type[AnomalyModule]:
    """The AnomalyModule class a checkpoint names (``package.module.Class``), as a Hydra ``_target_``: its installed
    module is imported (no code from the file runs; standard-library modules are never imported for it), and a
    name that is not an AnomalyModule is refused."""
    path = moved_classes().get(str(path), str(path))  # a class its slice has moved since the file was written
    module_name, _, name = path.rpartition(".")
    if module_name.split(".")[0] in sys.stdlib_module_names:
        raise ConfigError(f"the checkpoint names {path} as its model class, which is not an AnomalyModule: not loaded")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(
            f"the checkpoint's model class {path} cannot be imported ({type(err).__name__}): install the package "
            "that defines it"
        ) from err
    if not (isinstance(cls, type) and issubclass(cls, AnomalyModule)):
        raise ConfigError(f"the checkpoint names {path}, which is not a fod_lightning AnomalyModule: not loaded")
    return cls


def plain(value):
    """``value`` with every OmegaConf container turned into plain dicts and lists (resolved): what a checkpoint
    loaded ``weights_only`` can hold."""
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(plain(v) for v in value)
    return value
