"""Export a fitted model to ONNX, checked against the torch model, with its preprocessing contract beside it.

python -m fod_lightning.export ckpt_path=CKPT output=model.onnx
python -m fod_lightning.export ckpt_path=bottle-pix.pth reference_features=bottle.pkl \\
    model/net/backbone=wide_resnet50_2 output=bottle.onnx                # an authors' checkpoint

Exit codes: 0 done; 1 the parity check failed (nothing written); 2 a user error (one line on stderr). The work is
:func:`fod_lightning.deploy.onnx.export`.
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from fod_lightning.deploy.onnx import ParityError, export
from fod_lightning.utils.config_dir import CONFIG_DIR
from fod_lightning.utils.entry import run_command

__all__ = ["ParityError", "export", "main"]


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="export")
def main(cfg: DictConfig) -> None:
    document = run_command(lambda: export(cfg), exit_codes={ParityError: 1})
    errors = ", ".join(f"{k} {v:.1e}" for k, v in document["parity"]["relative_error"].items())
    print(f"exported {cfg.output} (opset {document['opset']}; parity: relative error {errors}) and "
          f"{Path(cfg.output).with_suffix('.json')}")  # fmt: skip


if __name__ == "__main__":
    main()
