"""The number a sweeper optimises: ``optimized_metric``, averaged over the job's categories.

Names say where the number was measured:
- ``val/<metric>``: the last validation epoch; ``val/<metric>_best``: the best validation epoch. Under
  ``data.val_protocol=from_train`` validation is held-out normal training images plus synthetic-defect copies;
  under ``paper`` it is the test split, so ``val/...`` is refused there.
- ``test/<metric>``: the test split. Allowed, and named so: the chosen setting's test figures are then optimistic.
"""

import math

from fod_lightning.errors import ConfigError
from fod_lightning.reporting.results import METRICS

SPLITS = ("val", "test")


def check_objective(name: str | None, val_protocol: str) -> None:
    """Refuse unknown names and a test-split metric that is not named ``test/...``, before any training."""
    if name is None:
        return
    split, _, metric = str(name).partition("/")
    base = metric.removesuffix("_best")
    if base not in METRICS or split not in SPLITS or (split == "test" and metric != base):
        raise ConfigError(
            f"optimized_metric={name} is unknown: use val/<m>, val/<m>_best or test/<m> with <m> one of "
            f"{', '.join(METRICS)}"
        )
    if split == "val" and val_protocol == "paper":
        raise ConfigError(
            f"optimized_metric={name} under data.val_protocol=paper would be measured on the test split: set "
            f"data.val_protocol=from_train, or optimized_metric=test/{base} to optimise on "
            "the test split knowingly"
        )


def objective_value(results: dict, name: str) -> float:
    """Mean of ``name`` over the categories of ``results`` (nan if a category lacks it)."""
    split, _, metric = name.partition("/")
    values = []
    for category in results["categories"].values():
        if split == "test":
            values.append(category.get(metric, math.nan))
        elif metric.endswith("_best"):
            values.append(category.get("best", {}).get(metric.removesuffix("_best"), {}).get("value", math.nan))
        else:
            values.append(category.get("val", {}).get(metric, math.nan))
    return sum(values) / len(values) if values else math.nan
