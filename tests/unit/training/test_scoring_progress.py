"""Scoring the test split logs its progress with an estimate (issue 28: every long phase that is not an epoch), from
the main process only."""

import logging
from types import SimpleNamespace

import fod_lightning.utils.progress as progress_module
from fod_lightning.training.callbacks.scoring_progress import ScoringProgress


def test_scoring_the_test_split_logs_its_progress(caplog, monkeypatch):
    clock = iter(range(0, 1000, 20))  # 20 s between readings: a line after every batch
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    callback, module = ScoringProgress(every=10.0), SimpleNamespace()
    trainer = SimpleNamespace(num_test_batches=[4], is_global_zero=True)
    with caplog.at_level(logging.INFO, logger="fod_lightning"):
        callback.on_test_epoch_start(trainer, module)
        for i in range(4):
            callback.on_test_batch_end(trainer, module, None, None, i)
        callback.on_test_epoch_end(trainer, module)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "SimpleNamespace: scoring the test split (batches): 4 to do"
    assert lines[1].startswith("SimpleNamespace: scoring the test split (batches): 1/4 (25%), 20 s spent, about 60 s")
    assert lines[-1].startswith("SimpleNamespace: scoring the test split (batches): done in")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fod_lightning"):  # another DDP rank: silent
        other = SimpleNamespace(num_test_batches=[4], is_global_zero=False)
        callback.on_test_epoch_start(other, module)
        callback.on_test_batch_end(other, module, None, None, 0)
        callback.on_test_epoch_end(other, module)
    assert not caplog.records


def test_switching_the_progress_bar_off_is_one_setting(make_config):
    """``trainer.enable_progress_bar=false`` alone: the bar's callback is left out (Lightning refuses the two)."""
    from lightning.pytorch.callbacks import ProgressBar

    from fod_lightning.engine.category import instantiate_callbacks

    cfg = make_config("trainer.enable_progress_bar=false", tiny=False)
    assert "progress_bar" in cfg.callbacks
    callbacks = instantiate_callbacks(cfg)
    assert not any(isinstance(c, ProgressBar) for c in callbacks)
    assert any(isinstance(c, ScoringProgress) for c in callbacks)
