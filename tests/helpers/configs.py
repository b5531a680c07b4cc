"""Run configs of the tests: a tiny embedded benchmark and a tiny but complete FOD, composed as Hydra would."""

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from fod_lightning.utils.config_dir import CONFIG_DIR

HELPERS = Path(__file__).resolve().parent
TESTS = HELPERS.parent
# A tiny embedded benchmark.
TINY_TEXTURES = [
    "data.n_train=4",
    "data.n_test_good=2",
    "data.n_test_per_defect=1",
    "data.crop_size=64",
]
# A tiny run of any model: 32 px, one epoch, no progress bar, on the CPU.
TINY_RUN = [
    "data.image_size=32",
    "data.eval_batch_size=4",
    "data.num_workers=0",
    "trainer.max_epochs=1",
    "trainer.log_every_n_steps=1",
    "trainer.check_val_every_n_epoch=1",
    "trainer.enable_progress_bar=false",
    "~callbacks.progress_bar",
    "trainer.accelerator=cpu",
    "data.calibration_min_images=1",  # the tiny benchmark still holds out a calibration image (4 training images)
]
# A tiny but complete FOD: real lite0 backbone, small transformers.
TINY = [*TINY_RUN, "model.net.d_models=[16,32]", "model.net.depth=1", "model.net.n_heads=2"]


def compose_config(tmp_path: Path, overrides: list[str]):
    """The run config as Hydra would build it, with every output under ``tmp_path``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("run", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.root_dir = str(tmp_path)
        cfg.paths.cache_dir = str(tmp_path)  # generated data in tmp_path/data, not the user's cache
        cfg.paths.output_dir = str(tmp_path / "out")
        cfg.hydra.runtime.output_dir = str(tmp_path / "out")
    HydraConfig.instance().set_config(cfg)
    return cfg
