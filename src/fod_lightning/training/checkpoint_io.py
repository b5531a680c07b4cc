"""Lightning's checkpoint IO (its own, atomic writes included), serving a checkpoint the engine has already read: a
resumed category reads its ``last.ckpt`` once."""

from pathlib import Path

from lightning.pytorch.plugins.io import TorchCheckpointIO


class ReadOnceCheckpointIO(TorchCheckpointIO):
    """``load_checkpoint`` of ``path`` returns ``contents`` (once); any other file is read as Lightning reads it."""

    def __init__(self, path: str | Path, contents: dict) -> None:
        super().__init__()
        self._path, self._contents = Path(path).expanduser().resolve(), contents

    def load_checkpoint(self, path, *args, **kwargs):
        if self._contents is not None and Path(path).expanduser().resolve() == self._path:
            contents, self._contents = self._contents, None
            return contents
        return super().load_checkpoint(path, *args, **kwargs)
