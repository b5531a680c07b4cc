"""What FOD's slice registers with the generic layers (the entry point ``fod`` of ``fod_lightning.plugins``): the
readers of the authors' files and of FOD checkpoints of format 1, and the old paths of its classes."""

from pathlib import Path

from fod_lightning.training.checkpoint_format import OLD_KEYS, CheckpointRecord
from fod_lightning.training.fod.authors_files import AuthorsFilesReader
from fod_lightning.training.fod.module import FODLitModule
from fod_lightning.training.plugins import CheckpointReader, Plugin, ReaderSettings

MODULE = "fod_lightning.training.fod.module.FODLitModule"


class Format1Reader(CheckpointReader):
    """fod_lightning checkpoints of format 1, which FOD alone wrote: they do not name their module class."""

    name = "fod_format1"
    what = "FOD checkpoints of fod_lightning's checkpoint format 1"

    def recognises(self, contents: object, path: Path) -> bool:
        meta = contents.get(OLD_KEYS["meta"]) if isinstance(contents, dict) else None
        return isinstance(meta, dict) and not meta.get("module") and isinstance(contents.get("state_dict"), dict)

    def load(self, contents: object, path: Path, settings: ReaderSettings) -> FODLitModule:
        return FODLitModule.from_record(CheckpointRecord.of(contents, path))


PLUGIN = Plugin(
    readers=(AuthorsFilesReader(), Format1Reader()),
    moved={
        "fod_lightning.training.fod_module.FODLitModule": MODULE,  # checkpoints of format 2, configs
        "fod_lightning.lit_module.FODLitModule": MODULE,  # configs from before the layered layout
        "fod_lightning.models.FOD": "fod_lightning.models.fod.model.FOD",
    },
)
