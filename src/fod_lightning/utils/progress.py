"""Progress of a long phase that is not an epoch (features, a coreset, calibration, a statistics fit): log lines with
the share done, the time spent and an estimate of the time left, at most every ``every`` seconds. They go through
logging, so they reach the terminal and the run's log file alike, and nothing fights Lightning's progress bar."""

import logging
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

log = logging.getLogger("fod_lightning")
T = TypeVar("T")


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


class Progress:
    """Call :meth:`advance` as work is done (``total`` units); a line is logged when a phase starts, then at most every
    ``every`` seconds, and when it ends if it took more than ``every``."""

    def __init__(self, what: str, total: int, every: float = 10.0, logger: logging.Logger = log) -> None:
        self.what, self.total, self.every, self.log = what, max(int(total), 0), every, logger
        self.done, self.start = 0, time.monotonic()
        self.last = self.start
        self.log.info("%s: %d to do", what, self.total)

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last < self.every or self.done >= self.total:
            return
        self.last = now
        spent = now - self.start
        left = spent / self.done * (self.total - self.done) if self.done else float("nan")
        self.log.info("%s: %d/%d (%.0f%%), %s spent, about %s left", self.what, self.done, self.total,
                      100 * self.done / max(self.total, 1), duration(spent), duration(left))  # fmt: skip

    def finish(self) -> None:
        spent = time.monotonic() - self.start
        if spent >= self.every:
            self.log.info("%s: done in %s", self.what, duration(spent))

    def step_to(self, done: int, total: int | None = None) -> None:
        """For a callback that reports how much is done (a coreset's selections)."""
        if total is not None:
            self.total = total
        self.advance(done - self.done)


def with_progress(items: Iterable[T], what: str, total: int, every: float = 10.0) -> Iterator[T]:
    """``items``, with :class:`Progress` lines as they are consumed (one unit each)."""
    progress = Progress(what, total, every)
    for item in items:
        yield item
        progress.advance()
    progress.finish()
