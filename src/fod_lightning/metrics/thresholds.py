"""Decision thresholds saved with a fitted model: anomalous when the score exceeds them.

``normal`` (default): from the scores of normal images the model was not trained on (the held-out calibration
images, see ``data.calibration_fraction``); no defect examples needed. The image threshold follows ``image_rule``:

- ``quantile``: the ``image_quantile`` of their image scores (with n images anything above 1 - 1/(n + 1) is their
  maximum, whatever the quantile asks);
- ``conformal`` (the default): the k-th smallest of the n scores, k = ceil((n + 1)(1 - false_alarm_rate)): a new
  normal image from the same distribution scores above it with probability (n + 1 - k) / (n + 1) <= false_alarm_rate
  (split conformal, exact for exchangeable scores, no assumption on their distribution); with too few images (k > n)
  the maximum, whose rate 1 / (n + 1) is stated instead;
- ``bound``: mean + t * s * sqrt(1 + 1/n), the one-sided prediction bound of a normal sample at false_alarm_rate (t: the
  Student quantile with n - 1 degrees of freedom): a margin that grows as n shrinks, exact if the scores are normally
  distributed.

The pixel threshold is the ``pixel_quantile`` of all their anomaly-map pixels (pixels are plentiful).

``val_f1``: the F1-max thresholds of the labelled validation split of ``data.val_protocol=from_train``
(held-out normal images and synthetic-defect copies). Under ``paper`` the validation split is the test
split, and thresholds are never chosen on it.

``none``: no thresholds; ``predict`` then needs ``threshold=``.

:class:`Thresholds` is the one place that holds them: a model's calibrated thresholds (saved with its weights),
the F1-max thresholds of its last validation, the choice its pictures show and the labels ``predict`` gives. A
score at or above a threshold is anomalous (the rule of the F1-max thresholds).
"""

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import t as student_t

from fod_lightning.errors import ConfigError
from fod_lightning.metrics.f1_max import BinaryF1Max
from fod_lightning.utils.checks import is_int

SOURCES = ("normal", "val_f1", "none")
IMAGE_RULES = ("quantile", "conformal", "bound")


@dataclass(frozen=True)
class CalibrationSettings:
    """``model.calibration``: how thresholds are chosen (see the module docstring)."""

    source: str = "normal"
    image_rule: str = "conformal"
    false_alarm_rate: float = 0.01  # the rate the conformal and bound rules aim at
    image_quantile: float = 0.99
    pixel_quantile: float = 0.999
    min_images: int = 10  # fewer calibration images: calibrated anyway, with a warning wherever it is shown

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ConfigError(f"model.calibration.source={self.source!r} is unknown; use one of {SOURCES}")
        if self.image_rule not in IMAGE_RULES:
            raise ConfigError(f"model.calibration.image_rule={self.image_rule!r} is unknown; use one of "
                              f"{', '.join(IMAGE_RULES)}")  # fmt: skip
        if not 0.0 < self.false_alarm_rate < 1.0:
            raise ConfigError(f"model.calibration.false_alarm_rate={self.false_alarm_rate} must be in (0, 1): "
                              "e.g. 0.01")  # fmt: skip
        for key in ("image_quantile", "pixel_quantile"):
            if not 0.0 < getattr(self, key) <= 1.0:
                raise ConfigError(f"model.calibration.{key}={getattr(self, key)} must be in (0, 1]")
        if not (is_int(self.min_images) and self.min_images >= 1):
            raise ConfigError(f"model.calibration.min_images={self.min_images!r} must be a positive integer")

    def check_protocol(self, val_protocol: str) -> None:
        if self.source == "val_f1" and val_protocol != "from_train":
            raise ConfigError(
                "model.calibration.source=val_f1 needs data.val_protocol=from_train: under paper the "
                "validation split is the test split, and thresholds are never chosen on it"
            )


@torch.no_grad()
def normal_scores(
    score_images: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], images: Iterable[torch.Tensor]
) -> tuple[np.ndarray, np.ndarray]:
    """The image scores (n,) and every map pixel (flattened) of batches of normalised normal images.

    Args:
        score_images: images (B, 3, H, W) -> (image_score (B,), anomaly_map (B, H, W)).
    """
    scores, maps = [], []
    for batch in images:
        score, amap = score_images(batch)
        scores.append(score.float().cpu().numpy())
        maps.append(amap.float().cpu().numpy().ravel())
    if not scores:
        raise ValueError("threshold calibration needs at least one normal image")
    return np.concatenate(scores), np.concatenate(maps)


def image_threshold(scores: np.ndarray, settings: "CalibrationSettings") -> tuple[float, float | None]:
    """The image threshold of ``settings.image_rule`` on normal ``scores`` (n,), and the false-alarm rate it states
    for new normal images (None where the rule states none: ``quantile``)."""
    n, alpha = len(scores), settings.false_alarm_rate
    if settings.image_rule == "quantile":
        return float(np.quantile(scores, settings.image_quantile)), None
    if settings.image_rule == "conformal":
        k = min(n, math.ceil((n + 1) * (1 - alpha)))
        return float(np.sort(scores)[k - 1]), (n + 1 - k) / (n + 1)
    spread = float(np.std(scores, ddof=1)) if n > 1 else 0.0
    t = float(student_t.ppf(1 - alpha, n - 1)) if n > 1 else 0.0
    return float(np.mean(scores) + t * spread * math.sqrt(1 + 1 / n)), alpha


def normal_thresholds(
    score_images: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    images: Iterable[torch.Tensor],
    settings: "CalibrationSettings",
) -> dict:
    """The thresholds of normal images: the image one by ``settings.image_rule``, the pixel one the
    ``pixel_quantile`` of every map pixel; with the rate the image rule states (``false_alarm_rate``) and the
    number of images."""
    scores, pixels = normal_scores(score_images, images)
    image, rate = image_threshold(scores, settings)
    return {"image": image, "pixel": float(np.quantile(pixels, settings.pixel_quantile)),
            "num_images": int(len(scores)), "false_alarm_rate": rate}  # fmt: skip


@dataclass(frozen=True)
class Threshold:
    """One decision threshold (None: there is none) and where it came from, in words."""

    value: float | None
    source: str

    def text(self) -> str:
        return f"threshold {self.value:.4g} ({self.source})" if self.value is not None else self.source


log = logging.getLogger(__name__)
OPTIMISTIC = "test split's own F1-max threshold (optimistic)"
KINDS = ("image", "pixel")
LABELS = ("normal", "anomalous")


class Thresholds:
    """The decision thresholds of one model.

    ``calibrated``: the record saved with the weights (``image``, ``pixel``, ``source``, and for ``normal`` the
    quantiles, ``num_images`` and ``held_out``), or None. ``validation``: the F1-max thresholds of the last
    validation epoch (``image``, ``pixel``, ``epoch``), or None.
    """

    def __init__(self, settings: CalibrationSettings | None = None, calibrated: dict | None = None) -> None:
        self.settings = settings or CalibrationSettings()
        self.calibrated = calibrated
        self.validation: dict | None = None
        self._calibrated_step: int | None = None

    @property
    def image(self) -> float | None:
        return (self.calibrated or {}).get("image")

    @property
    def pixel(self) -> float | None:
        return (self.calibrated or {}).get("pixel")

    def record_validation(self, image: float | None, pixel: float | None, epoch: int) -> None:
        self.validation = {"image": image, "pixel": pixel, "epoch": epoch}

    def calibrate(self, score_images: Callable, batches: Callable[[], Iterable[torch.Tensor]], held_out: bool,
                  epoch: int, step: int) -> dict | None:  # fmt: skip
        """The thresholds of the current weights, per :class:`CalibrationSettings` (computed once per ``step``).

        Args:
            score_images: normalised images (B, 3, H, W) -> (image_score (B,), anomaly_map (B, H, W)).
            batches: yields batches of the calibration images (held-out normals), called only when needed.
            held_out: whether those images were held out from training.
        """
        settings = self.settings
        if settings.source == "none":
            return None
        if self._calibrated_step == step and self.calibrated is not None:
            return self.calibrated
        record = {"source": settings.source, "epoch": epoch, "step": step}
        if settings.source == "val_f1":
            if self.validation is None:
                return None
            record |= {**self.validation, "split": "validation (from_train)"}
        else:
            found = normal_thresholds(score_images, batches(), settings)
            record |= found | {"image_rule": settings.image_rule, "image_quantile": settings.image_quantile,
                               "pixel_quantile": settings.pixel_quantile, "held_out": held_out,
                               "min_images": settings.min_images}  # fmt: skip
            if found["num_images"] < settings.min_images and self.calibrated is None:  # once per fit
                log.warning("thresholds calibrated on %s: %s", found["num_images"], few_images(record))
        self.calibrated, self._calibrated_step = record, step
        return record

    def describe(self, kind: str) -> str:
        """Where the calibrated ``kind`` threshold came from, in words (for panels and plots)."""
        saved = self.calibrated or {}
        if saved.get("source") == "normal":
            where = "held-out normal images" if saved.get("held_out") else "normal training images (not held out)"
            rule = saved.get("image_rule", "quantile") if kind == "image" else "quantile"
            how = f"quantile {saved.get(f'{kind}_quantile')}" if rule == "quantile" else rule
            text = f"calibrated on {saved.get('num_images', '?')} {where}, {how}"
            return f"{text}; {few_images(saved)}" if few_images(saved) else text
        if saved.get("source") == "val_f1":
            return "calibrated: validation F1-max, from_train"
        return f"calibrated ({saved.get('source')})"

    def choose(self, kind: str, val_protocol: str, values: np.ndarray, targets: np.ndarray) -> Threshold:
        """The ``kind`` threshold to show on test pictures, and where it came from: the calibrated one; else, under
        ``from_train``, the last validation's F1-max threshold; else the F1-max threshold of ``values`` against
        ``targets`` themselves (optimistic: chosen on what it is shown on)."""
        saved = (self.calibrated or {}).get(kind)
        if saved is not None:
            return Threshold(float(saved), self.describe(kind))
        if val_protocol == "from_train" and (self.validation or {}).get(kind) is not None:
            return Threshold(float(self.validation[kind]), "validation F1-max threshold, from_train")
        if targets.any() and not targets.all():
            return Threshold(f1_max_threshold(values, targets), OPTIMISTIC)
        return Threshold(None, f"no {kind} threshold: none calibrated, and no ground truth to choose one")

    def for_decisions(self, image: float | None = None, pixel: float | None = None) -> tuple[Threshold, Threshold]:
        """The image and pixel thresholds of decisions (``predict``): the given values, else the calibrated ones."""
        chosen = []
        for kind, given in zip(KINDS, (image, pixel)):
            if given is not None:
                chosen.append(Threshold(float(given), f"{kind}_threshold given"))
            elif (self.calibrated or {}).get(kind) is not None:
                chosen.append(Threshold(float(self.calibrated[kind]), self.describe(kind)))
            else:
                chosen.append(Threshold(None, f"no {kind} threshold"))
        return chosen[0], chosen[1]


def statement(record: dict | None) -> str:
    """What a calibrated record promises, in words (``results.json``, the summary, W&B)."""
    if not record:
        return "no calibrated thresholds"
    if record.get("source") == "val_f1":
        return "F1-max thresholds of the held-out validation split (normal images and synthetic defects)"
    if record.get("source") != "normal":
        return f"thresholds of source {record.get('source')}"
    n, rule, rate = record.get("num_images"), record.get("image_rule", "quantile"), record.get("false_alarm_rate")
    what = f"{n} {'held-out normal images' if record.get('held_out') else 'normal training images (not held out)'}"
    if rule == "conformal":
        claim = (f"a new normal image of the same kind scores at or above the image threshold with probability at "
                 f"most {rate:.3g} (conformal order statistic of {what})")  # fmt: skip
    elif rule == "bound":
        claim = (f"false-alarm rate {rate:.3g} on new normal images if their scores are normally distributed "
                 f"(prediction bound of {what})")  # fmt: skip
    else:
        expected = max(1 - record.get("image_quantile", 0.99), 1 / (n + 1)) if n else None
        claim = (f"the {record.get('image_quantile')} quantile of {what}: about {expected:.2g} of new normal images "
                 "above it, and more with few images")  # fmt: skip
    if not record.get("held_out"):
        claim += "; biased low, since the model was trained on them"
    pixel = f"; pixel threshold: the {record.get('pixel_quantile')} quantile of their pixels"
    return claim + pixel + (f"; {few_images(record)}" if few_images(record) else "")


def few_images(record: dict) -> str:
    """The warning a threshold calibrated on fewer than ``min_images`` carries ("" otherwise)."""
    count, minimum = record.get("num_images"), record.get("min_images", CalibrationSettings.min_images)
    if record.get("source") != "normal" or count is None or count >= minimum:
        return ""
    return (
        f"UNRELIABLE: fewer than {minimum} images (raise data.calibration_fraction or add normal images; "
        "model.calibration.min_images sets the minimum)"
    )


def is_anomalous(score: float, threshold: float | None) -> bool | None:
    """The decision rule of every threshold: anomalous at or above it (None without a threshold)."""
    return None if threshold is None else bool(score >= threshold)


def label(score: float, threshold: float | None) -> str:
    """``normal`` / ``anomalous`` by :func:`is_anomalous`, ``""`` without a threshold."""
    decision = is_anomalous(score, threshold)
    return "" if decision is None else LABELS[int(decision)]


def f1_max_threshold(values: np.ndarray, targets: np.ndarray) -> float:
    """The threshold of the maximum F1 of scores ``values`` against binary ``targets`` (any shapes, flattened)."""
    f1 = BinaryF1Max(sync_on_compute=False)  # one process draws: no cross-process sync
    f1.update(torch.from_numpy(values).flatten(), torch.from_numpy(targets).flatten().bool())
    f1.compute()
    return float(f1.threshold)
