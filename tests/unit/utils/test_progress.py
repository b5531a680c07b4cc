"""Progress lines of long phases that are not epochs: the share done, the time spent and an estimate of what is left."""

import logging

from fod_lightning.utils import progress as module
from fod_lightning.utils.progress import Progress, with_progress


def test_lines_say_how_far_how_long_and_how_much_is_left(monkeypatch, caplog):
    clock = iter([0.0, 5.0, 12.0, 13.0, 30.0, 31.0])
    monkeypatch.setattr(module.time, "monotonic", lambda: next(clock))
    caplog.set_level(logging.INFO, "fod_lightning")
    progress = Progress("coreset", 100, every=10.0)  # t=0
    progress.advance(10)  # t=5: too soon for a line
    progress.advance(20)  # t=12: 30 of 100 in 12 s, 28 s left
    progress.advance(10)  # t=13: too soon again
    progress.step_to(100)  # t=30: done: no progress line
    progress.finish()  # t=31
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["coreset: 100 to do", "coreset: 30/100 (30%), 12 s spent, about 28 s left",
                        "coreset: done in 31 s"]  # fmt: skip


def test_a_wrapped_iterable_yields_every_item():
    assert list(with_progress(range(5), "features", 5)) == [0, 1, 2, 3, 4]
