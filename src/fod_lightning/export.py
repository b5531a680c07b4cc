"""Export a fitted model to ONNX, checked against the torch model, with its preprocessing contract beside it.

python -m fod_lightning.export ckpt_path=CKPT output=model.onnx
python -m fod_lightning.export ckpt_path=bottle-pix.pth reader=fod_authors reader.reference_features=bottle.pkl \\
    model/net/backbone=wide_resnet50_2 output=bottle.onnx                # an authors' checkpoint

Exit codes: 0 done; 1 the parity check failed (nothing written); 2 a user error (one line on stderr). The arguments
are checked before torch is imported; the work is :func:`fod_lightning.deploy.onnx.export`.
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from fod_lightning.utils.checks import check_given
from fod_lightning.utils.command_line import check_command_line
from fod_lightning.utils.config_dir import CONFIG_DIR
from fod_lightning.utils.entry import run_command

__all__ = ["USAGE", "export", "main"]
USAGE = "python -m fod_lightning.export ckpt_path=CKPT output=model.onnx"


def export(cfg: DictConfig) -> dict:
    """:func:`fod_lightning.deploy.onnx.export` once the mandatory settings are given."""
    check_given(cfg, USAGE)
    from fod_lightning.deploy.onnx import export as to_onnx

    return to_onnx(cfg)


def parity_exit_codes() -> dict[type, int]:
    from fod_lightning.deploy.onnx import ParityError

    return {ParityError: 1}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="export")
def hydra_main(cfg: DictConfig) -> None:
    document = run_command(lambda: export(cfg), exit_codes=parity_exit_codes())
    errors = ", ".join(f"{k} {v:.1e}" for k, v in document["parity"]["relative_error"].items())
    print(f"exported {cfg.output} (opset {document['opset']}; parity: relative error {errors}) and "
          f"{Path(cfg.output).with_suffix('.json')}")  # fmt: skip


def main() -> None:
    """``python -m fod_lightning.export`` / ``fod-export``: the command line checked, then Hydra."""
    run_command(lambda: check_command_line("export", sys.argv[1:]))
    hydra_main()


if __name__ == "__main__":
    main()
