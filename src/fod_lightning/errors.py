"""User-facing errors: bad input or configuration. The run entry prints them as one line."""

import sys


class FODUserError(Exception):
    """Something the user must fix; the message names the file or config key and the fix."""


class ConfigError(FODUserError, ValueError):
    """A configuration value is invalid."""


def one_line(err: BaseException) -> str:
    """The error's message as one line, also when a DataLoader worker re-raised it with its traceback."""
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    if not lines:
        return type(err).__name__
    last = lines[-1]
    # A re-raised worker error ends with "package.module.ErrorName: message".
    prefix = f"{type(err).__module__}.{type(err).__name__}: "
    return last.removeprefix(prefix).removeprefix(f"{type(err).__name__}: ") if len(lines) > 1 else last


def print_user_error(err: BaseException) -> "FODUserError":
    """An entry point's ending: a user error is printed as one line ``error: ...`` on stderr and returned (the
    caller exits); anything else is re-raised with its traceback."""
    cause = user_error(err)
    if cause is None:
        raise err
    print(f"error: {one_line(cause)}", file=sys.stderr)
    return cause


def user_error(err: BaseException) -> FODUserError | None:
    """The user error behind ``err`` (Hydra wraps constructor errors in InstantiationException)."""
    while err is not None:
        if isinstance(err, FODUserError):
            return err
        err = err.__cause__
    return None
