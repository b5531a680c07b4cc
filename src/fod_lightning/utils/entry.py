"""The one ending of every command: a user error is one line on stderr and an exit code, a bug keeps its
traceback, and W&B runs left open are finished."""

import logging
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import NoReturn, TypeVar

from fod_lightning.errors import error_line, one_line, user_error

log = logging.getLogger(__name__)
T = TypeVar("T")
USER_ERROR = 2  # exit code of a user error; 1 is a command's own partial failure (or a bug)


def fail(message: str, code: int = USER_ERROR) -> NoReturn:
    """End the command with ``error: <message>`` on stderr and ``code``."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def run_command(
    body: Callable[[], T],
    exit_codes: Mapping[type, int] | None = None,
    keep_going: bool = False,
    bug_message: str | None = None,
) -> T | None:
    """``body()``, ended the way every command ends.

    Args:
        exit_codes: exit code per user-error class (default 2).
        keep_going: a job of a multirun: any error is printed as one line (a bug is logged with its traceback)
            and None is returned, so that the sweep goes on.
        bug_message: print a bug's traceback and this line, exit 1 (where the caller would swallow the exception,
            as Hydra does with its callbacks'); None re-raises it.
    """
    try:
        return body()
    except SystemExit:
        raise
    except Exception as err:
        cause = user_error(err)
        if keep_going:
            if cause is None:
                log.exception("job failed")
            print(f"error: {error_line(err)}", file=sys.stderr)
            return None
        if cause is not None:
            code = next((c for cls, c in (exit_codes or {}).items() if isinstance(cause, cls)), USER_ERROR)
            fail(one_line(cause), code)
        if bug_message is None:
            raise
        traceback.print_exc()
        fail(bug_message, 1)
    finally:
        finish_wandb()


def finish_wandb() -> None:
    """A W&B run the command left open (it stopped half-way) is finished, so that its files are complete."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()
