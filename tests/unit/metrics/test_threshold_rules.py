"""The image threshold rules: the quantile, the conformal order statistic and the prediction bound, each by its
definition, and the statement each record makes."""

import math

import numpy as np
import pytest
from scipy import stats

from fod_lightning.errors import ConfigError
from fod_lightning.metrics.thresholds import CalibrationSettings, image_threshold, statement


def test_the_conformal_rule_is_the_order_statistic_with_the_stated_rate():
    scores = np.random.default_rng(0).normal(size=199)
    threshold, rate = image_threshold(scores, CalibrationSettings(image_rule="conformal", false_alarm_rate=0.05))
    k = math.ceil(200 * 0.95)  # 190th smallest of 199: P(new > it) = (199 + 1 - 190) / 200 = 0.05
    assert threshold == np.sort(scores)[k - 1] and rate == pytest.approx(0.05)
    few, rate = image_threshold(scores[:15], CalibrationSettings(image_rule="conformal", false_alarm_rate=0.01))
    assert few == scores[:15].max() and rate == pytest.approx(1 / 16)  # too few for 1%: the max, its rate stated


def test_the_conformal_rate_holds_on_new_normal_images():
    """Over many draws, new normal scores land above the conformal threshold at most at the stated rate."""
    rng = np.random.default_rng(1)
    settings = CalibrationSettings(image_rule="conformal", false_alarm_rate=0.1)
    exceed = []
    for _ in range(2000):
        threshold, rate = image_threshold(rng.gamma(2.0, size=29), settings)
        exceed.append(rng.gamma(2.0) > threshold)
    assert np.mean(exceed) == pytest.approx(rate, abs=0.02) and rate <= 0.1


def test_the_bound_rule_is_the_student_prediction_bound():
    scores = np.random.default_rng(2).normal(5.0, 2.0, size=12)
    threshold, rate = image_threshold(scores, CalibrationSettings(image_rule="bound", false_alarm_rate=0.01))
    expected = scores.mean() + stats.t.ppf(0.99, 11) * scores.std(ddof=1) * math.sqrt(1 + 1 / 12)
    assert threshold == pytest.approx(expected) and rate == 0.01 and threshold > scores.max()


def test_the_quantile_rule_is_the_old_default_and_states_its_limit_with_few_images():
    assert CalibrationSettings().image_rule == "conformal"  # the default since 2026-12-06
    scores = np.arange(15.0)
    threshold, rate = image_threshold(scores, CalibrationSettings(image_rule="quantile"))
    assert threshold == np.quantile(scores, 0.99) and rate is None
    record = {"source": "normal", "image_rule": "quantile", "image_quantile": 0.99, "pixel_quantile": 0.999,
              "num_images": 15, "held_out": True, "min_images": 10}  # fmt: skip
    assert "about 0.062 of new normal images above it" in statement(record)  # 1 / (15 + 1), not 1%
    conformal = record | {"image_rule": "conformal", "false_alarm_rate": 1 / 16}
    assert statement(conformal).startswith("a new normal image of the same kind scores at or above the image "
                                           "threshold with probability at most 0.0625")  # fmt: skip
    assert "biased low" in statement(record | {"held_out": False})


def test_unknown_rules_and_rates_are_refused():
    with pytest.raises(ConfigError, match="image_rule='max' is unknown"):
        CalibrationSettings(image_rule="max")
    with pytest.raises(ConfigError, match="false_alarm_rate=1.5 must be in"):
        CalibrationSettings(false_alarm_rate=1.5)
