"""User-facing errors: bad input or configuration. Every command prints them as one line (utils.entry)."""


class UserError(Exception):
    """Something the user must fix; the message names the file or config key and the fix."""


FODUserError = UserError  # its earlier name, kept for code that catches it


class ConfigError(UserError, ValueError):
    """A configuration value is invalid."""


class CheckpointError(ConfigError):
    """A checkpoint file is missing, not plain data, or not one fod_lightning can load."""


def one_line(err: BaseException) -> str:
    """The error's message as one line, also when a DataLoader worker re-raised it with its traceback."""
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    if not lines:
        return type(err).__name__
    last = lines[-1]
    # A re-raised worker error ends with "package.module.ErrorName: message".
    prefix = f"{type(err).__module__}.{type(err).__name__}: "
    return last.removeprefix(prefix).removeprefix(f"{type(err).__name__}: ") if len(lines) > 1 else last


def user_error(err: BaseException) -> UserError | None:
    """The user error behind ``err`` (Hydra wraps constructor errors in InstantiationException)."""
    while err is not None:
        if isinstance(err, UserError):
            return err
        err = err.__cause__
    return None


def error_line(err: BaseException) -> str:
    """A user error's one line, or the type and the whole message of another error, on one line."""
    cause = user_error(err)
    if cause is not None:
        return one_line(cause)
    return f"{type(err).__name__}: {' '.join(str(err).split())}"[:500]
