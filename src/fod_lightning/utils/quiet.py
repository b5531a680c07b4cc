"""Messages of other packages that do not concern the user of a run, kept out of the terminal and the log file."""

import logging

FOREIGN_TIPS = ("litlogger",)  # Lightning's advertisement for its cloud logger, printed at every fit


class DropForeignTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(tip in record.getMessage() for tip in FOREIGN_TIPS)


def silence_foreign_tips() -> None:
    """Drop the tips above from Lightning's rank-zero logger (idempotent)."""
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, DropForeignTips) for f in logger.filters):
        logger.addFilter(DropForeignTips())
