"""A command's Hydra arguments checked before anything heavy is imported: a mistyped key, option or override is one
line naming it and the closest valid one (Hydra's own report is several lines, with no suggestion).

The config is composed with the command line as Hydra will compose it (a sweep with its first value); what Hydra
accepts passes to Hydra untouched.
"""

import argparse
import difflib
import re

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf

from fod_lightning.errors import ConfigError
from fod_lightning.utils.config_dir import CONFIG_DIR

INFO_CHOICES = ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath")


def hydra_arguments() -> argparse.ArgumentParser:
    """Hydra's command line: its flags and the overrides. Hydra's own parser is not public API;
    tests/unit/utils/test_command_line.py fails if its flags differ from these."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("overrides", nargs="*")
    for flags in (("--help", "-h"), ("--hydra-help",), ("--resolve",), ("--run", "-r"), ("--multirun", "-m"),
                  ("--shell-completion", "-sc")):  # fmt: skip
        parser.add_argument(*flags, action="store_true")
    for flags in (("--package", "-p"), ("--config-path", "-cp"), ("--config-name", "-cn"), ("--config-dir", "-cd"),
                  ("--experimental-rerun",)):  # fmt: skip
        parser.add_argument(*flags)
    parser.add_argument("--version", action="store_true")
    parser.add_argument("--cfg", "-c", choices=["job", "hydra", "all"])
    parser.add_argument("--info", "-i", nargs="?", const="all", choices=INFO_CHOICES)
    return parser


FAILING_KEY = re.compile(r"Could not (?:override|append to|delete from) '([^']+)'|Key '([^']+)' is not in struct")


def check_command_line(config_name: str, argv: list[str]) -> None:
    """Compose ``config_name`` with the overrides of ``argv``; a mistake raises one :class:`ConfigError` line.
    Help, shell completion, ``--cfg``/``--info`` and other config folders are left to Hydra."""
    args, _ = hydra_arguments().parse_known_args(argv)
    left_to_hydra = (args.help, args.hydra_help, args.version, args.shell_completion, args.cfg, args.info,
                     args.config_dir)  # fmt: skip
    if any(left_to_hydra):
        return
    name = args.config_name or config_name
    try:
        parsed = OverridesParser.create().parse_overrides(args.overrides)
    except HydraException as err:
        raise ConfigError(f"cannot read the command line: {first_line(err)}") from err
    sweeps = [o.input_line for o in parsed if o.is_sweep_override()]
    if sweeps and not args.multirun:
        raise ConfigError(f"{sweeps[0]} lists several values: add -m to run one job per value (a multirun)")
    overrides = [o for o in map(first_value, parsed) if o]
    try:
        composed(name, overrides)
    except MissingConfigException as err:
        raise ConfigError(missing_option(err)) from err
    except HydraException as err:
        found = FAILING_KEY.search(str(err))
        if found is None:
            raise ConfigError(first_line(err)) from err
        key = found.group(1) or found.group(2)
        raise ConfigError(f"{key} is not a setting{closest_key(key, name, overrides)}") from err


def composed(name: str, overrides: list[str]) -> DictConfig:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose(name, overrides=overrides, return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


def first_value(override) -> str | None:
    """The override as one plain ``key=value`` (a sweep's first value); None for sweeps that cannot be listed
    (Optuna's intervals): the sweeper checks those."""
    if not override.is_sweep_override():
        return override.input_line
    try:
        value = next(override.sweep_string_iterator())
    except (HydraException, StopIteration):
        return None
    prefix = "++" if override.is_force_add() else "+" if override.is_add() else ""
    return f"{prefix}{override.key_or_group}={value}"


def first_line(err: BaseException) -> str:
    return next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)


def missing_option(err: MissingConfigException) -> str:
    """``data=nope``: the group, the closest option and every option."""
    options = sorted(err.options or [])
    found = re.search(r"Could not find '([^']+)'", str(err))
    group, _, option = (found.group(1) if found else str(err.missing_cfg_file)).rpartition("/")
    close = difflib.get_close_matches(option, options, n=1, cutoff=0.5)
    hint = f"did you mean {group}={close[0]}? " if close else ""
    return f"{group}={option} is not an option of {group}: {hint}options are {', '.join(options)}"


def closest_key(key: str, name: str, overrides: list[str]) -> str:
    """``: did you mean <key>?`` with the closest key of the config composed without the mistaken override, or
    the keys beside it; empty when that config cannot be composed either."""
    others = [o for o in overrides if o.lstrip("+~").partition("=")[0] != key]
    try:
        keys = dotted_keys(composed(name, others))
    except HydraException:
        return ""
    if not key.startswith("hydra."):
        keys = [k for k in keys if not k.startswith("hydra.")]
    keys = [k for k in keys if k != "hydra"]
    parent, _, leaf = key.rpartition(".")
    beside = [k.rpartition(".")[2] for k in keys if k.rpartition(".")[0] == parent]
    close = [f"{parent}.{m}" if parent else m for m in difflib.get_close_matches(leaf, beside, n=1, cutoff=0.6)]
    leaves = {k.rpartition(".")[2]: k for k in reversed(keys)}  # e.g. lambda1 -> model.lambda1
    close = close or [leaves[m] for m in difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.8)]
    if close:
        return f": did you mean {close[0]}?"
    return f": {parent or 'the top level'} has {', '.join(beside)}" if beside else ""


def dotted_keys(config: DictConfig | dict, prefix: str = "") -> list[str]:
    """Every key of ``config``, dotted, interpolations left unresolved."""
    plain = OmegaConf.to_container(config, resolve=False) if OmegaConf.is_config(config) else config
    keys = []
    for key, value in plain.items():
        keys.append(f"{prefix}{key}")
        if isinstance(value, dict):
            keys += dotted_keys(value, f"{prefix}{key}.")
    return keys
