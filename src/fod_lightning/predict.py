"""Score new images with a fitted model: raw anomaly maps, overlays and a CSV of scores and labels.

python -m fod_lightning.predict ckpt_path=CKPT input=FOLDER output_dir=OUT
python -m fod_lightning.predict ckpt_path=CKPT 'input=/data/line3/*.png' output_dir=OUT threshold=0.9
python -m fod_lightning.predict ckpt_path=bottle-pix.pth reference_features=bottle.pkl \\
    model/net/backbone=wide_resnet50_2 input=IMG output_dir=OUT          # an authors' checkpoint

Exit codes: 0 all scored; 1 some images unreadable (listed in scores.csv); 2 a user error. The work is
:func:`fod_lightning.deploy.predict.predict`.
"""

import sys

import hydra
from omegaconf import DictConfig

from fod_lightning.deploy.predict import USAGE, predict
from fod_lightning.utils.config_dir import CONFIG_DIR
from fod_lightning.utils.entry import run_command

__all__ = ["USAGE", "main", "predict"]


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    summary = run_command(lambda: predict(cfg))
    print(f"scored {summary['scored']} image(s), {summary['failed']} unreadable: {summary['csv']}")
    if summary["failed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
