"""Score new images with a fitted model: raw anomaly maps, overlays and a CSV of scores and labels.

python -m fod_lightning.predict ckpt_path=CKPT input=FOLDER output_dir=OUT
python -m fod_lightning.predict ckpt_path=CKPT 'input=/data/line3/*.png' output_dir=OUT threshold=0.9
python -m fod_lightning.predict ckpt_path=bottle-pix.pth reader=fod_authors reader.reference_features=bottle.pkl \\
    model/net/backbone=wide_resnet50_2 input=IMG output_dir=OUT          # an authors' checkpoint

Exit codes: 0 all scored; 1 some images unreadable (listed in scores.csv); 2 a user error. The arguments are checked
before torch is imported; the work is :func:`fod_lightning.deploy.predict.predict`.
"""

import sys

import hydra
from omegaconf import DictConfig

from fod_lightning.utils.checks import check_given
from fod_lightning.utils.command_line import check_command_line
from fod_lightning.utils.config_dir import CONFIG_DIR
from fod_lightning.utils.entry import run_command

__all__ = ["USAGE", "main", "predict"]
USAGE = "python -m fod_lightning.predict ckpt_path=CKPT input=IMAGES output_dir=DIR"


def predict(cfg: DictConfig) -> dict:
    """:func:`fod_lightning.deploy.predict.predict` once the mandatory settings are given."""
    check_given(cfg, USAGE)
    from fod_lightning.deploy.predict import predict as score

    return score(cfg)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def hydra_main(cfg: DictConfig) -> None:
    summary = run_command(lambda: predict(cfg))
    print(f"scored {summary['scored']} image(s), {summary['failed']} unreadable: {summary['csv']}")
    if summary["failed"]:
        sys.exit(1)


def main() -> None:
    """``python -m fod_lightning.predict`` / ``fod-predict``: the command line checked, then Hydra."""
    run_command(lambda: check_command_line("predict", sys.argv[1:]))
    hydra_main()


if __name__ == "__main__":
    main()
