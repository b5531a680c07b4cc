"""The unified setting: one model trained on the normal images of every category of the job, never told the category,
then tested on each category in turn (``setting=unified``)."""

from omegaconf import DictConfig

from fod_lightning.data.unified import UNIFIED, UnifiedDataModule
from fod_lightning.engine.category import checked_datamodule, fit_and_test_category
from fod_lightning.engine.resume import category_config


def fit_and_test_unified(cfg: DictConfig, names: list[str], resumed=None) -> dict[str, dict]:
    """Each category's data checked, one model fitted on their union (its files in ``<run>/unified/``), and the record
    of each category's test (its pictures and ``scores.csv`` in ``<run>/<category>/``)."""
    part_cfgs = {name: category_config(cfg, name) for name in names}
    parts = {name: checked_datamodule(part_cfg) for name, part_cfg in part_cfgs.items()}
    union = UnifiedDataModule(parts)
    tests = {name: (part_cfgs[name], parts[name]) for name in names}
    return fit_and_test_category(category_config(cfg, UNIFIED, resumed), union.check(), tests)
