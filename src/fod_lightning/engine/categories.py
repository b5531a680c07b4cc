"""``data.category`` expanded: one name, a list of names, or ``all`` = the categories present under ``data.root``."""

from dataclasses import dataclass, field
from pathlib import Path

import hydra
from omegaconf import DictConfig, ListConfig

from fod_lightning.data.samples import DatasetLayoutError


@dataclass
class Categories:
    """What a run will train, in order, and what ``all`` found on disk.

    ``missing``: official names without a folder under ``data.root`` (not run). ``custom``: folders in the
    benchmark's layout under other names (run, as the user's own categories).
    """

    names: list[str]
    missing: list[str] = field(default_factory=list)
    custom: list[str] = field(default_factory=list)

    def notes(self, benchmark: str, root: str) -> list[str]:
        notes = []
        if self.missing:
            notes.append(f"{benchmark} categories missing under {root} (not run): {', '.join(self.missing)}")
        if self.custom:
            notes.append(f"folders in the {benchmark} layout under {root} with other names, run as categories: "
                         f"{', '.join(self.custom)}")  # fmt: skip
        return notes


def categories_of(cfg: DictConfig) -> Categories:
    """The categories of ``cfg.data.category``; unknown names raise a one-line error before any training."""
    datamodule_cls = hydra.utils.get_class(cfg.data._target_)
    requested = cfg.data.category
    if isinstance(requested, ListConfig | list | tuple):
        names = [str(c) for c in requested]
        if not names:
            raise DatasetLayoutError("data.category=[] names no category: give a name, a list of names or all")
    elif str(requested) == "all":
        return on_disk(cfg, datamodule_cls)
    else:
        names = [str(requested)]
    for name in names:
        datamodule_cls.check_category(name, Path(str(cfg.data.root)).expanduser())
    return Categories(names)


def on_disk(cfg: DictConfig, datamodule_cls: type) -> Categories:
    """``all``: the official categories found under the root, in the benchmark's order, then custom ones."""
    official = list(datamodule_cls.categories)
    probe = hydra.utils.instantiate(cfg.data, category=official[0])
    probe.prepare_data()  # a generated benchmark is written here
    official = list(probe.categories)  # an instance may serve some of them (the embedded benchmark's data.photos)
    present = probe.categories_on_disk()
    found = [c for c in official if c in present]
    custom = [c for c in present if c not in official]
    if not found and not custom:
        raise DatasetLayoutError(
            f"no {datamodule_cls.benchmark} category folder under {probe.root}: set data.root to the folder that "
            f"holds them. {datamodule_cls.layout_help}"
        )
    return Categories(found + custom, [c for c in official if c not in present], custom)
