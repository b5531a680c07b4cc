"""The test of the final model reads the final validation's predictions when that validation scored the same images
with the same weights (the paper protocol), and scores afresh otherwise: the same results either way."""

import logging

import pytest
import torch

from fod_lightning.models.base import AnomalyPrediction
from fod_lightning.run import run
from fod_lightning.training.scored_validation import ScoredValidation
from helpers.configs import TINY, TINY_TEXTURES, compose_config

REUSED = "the final validation's scores"
METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro", "image_f1_max", "pixel_f1_max")


def prediction(batch: int) -> AnomalyPrediction:
    return AnomalyPrediction(anomaly_map=torch.rand(batch, 8, 8), image_score=torch.rand(batch))


def test_a_batch_is_found_by_its_images_until_the_weights_change():
    scored = ScoredValidation()
    pred = prediction(2)
    scored.keep(["a.png", "b.png"], pred, 0.5)
    assert scored.find(["a.png", "b.png"]) == (pred, 0.5)
    assert scored.find(["b.png", "a.png"]) is None and scored.find(["a.png"]) is None  # other batches
    scored.forget()
    assert scored.find(["a.png", "b.png"]) is None
    assert (scored.reused, scored.scored) == (1, 3)


def test_a_validation_larger_than_the_budget_is_not_kept():
    scored = ScoredValidation(max_bytes=3 * (8 * 8 + 1) * 4)  # room for three images' maps and scores
    scored.keep(["a.png", "b.png"], prediction(2), 0.1)
    scored.keep(["c.png", "d.png"], prediction(2), 0.1)  # over the budget: nothing of this validation is kept
    scored.keep(["e.png"], prediction(1), 0.1)
    assert scored.find(["a.png", "b.png"]) is None and scored.find(["e.png"]) is None


@pytest.mark.parametrize("protocol", ["paper", "from_train"])
def test_the_test_reuses_the_final_validation_only_when_it_scored_the_test_split(make_config, monkeypatch, caplog,
                                                                                 tmp_path, protocol):  # fmt: skip
    overrides = ("data.category=brick", "trainer.max_epochs=2", f"data.val_protocol={protocol}",
                 "~callbacks.test_pictures")  # fmt: skip
    with caplog.at_level(logging.INFO, logger="fod_lightning.training.module"):
        reused = run(make_config(*overrides))["categories"]["brick"]
    assert (REUSED in caplog.text) == (protocol == "paper")
    caplog.clear()
    monkeypatch.setattr(ScoredValidation, "find", lambda self, paths: None)  # every test batch scored again
    again = compose_config(tmp_path / "again", [*TINY_TEXTURES, *TINY, *overrides])
    scored = run(again)["categories"]["brick"]
    assert REUSED not in caplog.text
    for name in METRICS:
        assert reused[name] == scored[name], name


def test_a_training_epoch_after_the_last_validation_means_scoring_again(make_config, caplog):
    with caplog.at_level(logging.INFO, logger="fod_lightning.training.module"):
        run(make_config("data.category=brick", "trainer.max_epochs=3", "trainer.check_val_every_n_epoch=2",
                        "~callbacks.test_pictures"))  # fmt: skip
    assert REUSED not in caplog.text
