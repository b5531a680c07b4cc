"""What a model's slice adds to the generic layers without their importing it: readers of foreign checkpoint formats and
the old paths of its classes. Each slice names one :class:`Plugin` as an entry point of the group
``fod_lightning.plugins`` (``pyproject.toml``); the checkpoint loader and the config checks ask :func:`plugins`.

A :class:`CheckpointReader` recognises a file from its contents, which the loader reads once (``torch.load`` with
``weights_only``: nothing in the file runs), loads it as a fitted
:class:`~fod_lightning.training.module.AnomalyModule`, and names the config it needs (:attr:`CheckpointReader.needs`).
"""

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path

log = logging.getLogger(__name__)
GROUP = "fod_lightning.plugins"


@dataclass(frozen=True)
class ReaderSettings:
    """What a foreign file does not say about itself, from the command's config: ``options`` (the ``reader`` config
    group's node: its files beside the checkpoint, the resize rule, ...) and a factory of the backbone it was trained
    with (``model/net/backbone``; None: the reader's own default)."""

    options: Mapping = field(default_factory=dict)
    backbone: Callable[[], object] | None = None


class CheckpointReader:
    """A foreign checkpoint format. Subclasses set :attr:`name` (also its ``conf/reader/<name>.yaml``), :attr:`needs`
    and implement :meth:`recognises` and :meth:`load`."""

    name: str = ""
    what: str = ""  # the files it reads, in words
    needs: tuple[str, ...] = ()  # the config it reads, in words (the keys and their defaults)

    def recognises(self, contents: object, path: Path) -> bool:
        """Whether ``contents`` (the file loaded ``weights_only``) is of this format. Never raises."""
        raise NotImplementedError

    def load(self, contents: object, path: Path, settings: ReaderSettings):
        """The fitted module of the file, in eval mode."""
        raise NotImplementedError


@dataclass(frozen=True)
class Plugin:
    """What one model slice registers."""

    readers: tuple[CheckpointReader, ...] = ()
    moved: Mapping[str, str] = field(default_factory=dict)  # old class path -> new (configs' _target_, checkpoints)


_REGISTERED: list[Plugin] = []


def register(plugin: Plugin) -> None:
    """Add a plugin at run time (besides the installed entry points): tests, notebooks."""
    _REGISTERED.append(plugin)


@cache
def _installed() -> tuple[Plugin, ...]:
    found = []
    for entry in entry_points(group=GROUP):
        try:
            found.append(entry.load())
        except Exception as err:  # a broken third-party plugin must not stop the commands
            log.warning("plugin %s (%s) could not be loaded: %s", entry.name, entry.value, err)
    return tuple(found)


def plugins() -> tuple[Plugin, ...]:
    return (*_installed(), *_REGISTERED)


def readers() -> list[CheckpointReader]:
    return [reader for plugin in plugins() for reader in plugin.readers]


def reader_named(name: str) -> CheckpointReader | None:
    return next((r for r in readers() if r.name == name), None)


def moved_classes() -> dict[str, str]:
    return {old: new for plugin in plugins() for old, new in plugin.moved.items()}
