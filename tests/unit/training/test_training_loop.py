"""Training-loop settings that the speed work relies on: validation cadence and the GPU preset."""

import csv

import torch

from fod_lightning.run import run


def test_check_val_every_n_epoch_is_honoured(make_config, tmp_path):
    run(make_config("data.category=brick", "trainer.max_epochs=2", "trainer.check_val_every_n_epoch=2",
                    "~callbacks.test_pictures"))  # fmt: skip
    with open(tmp_path / "out" / "brick" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    validated = {row["epoch"] for row in rows if row.get("val/image_auroc")}
    trained = {row["epoch"] for row in rows if row.get("train/loss")}
    assert trained == {"0", "1"} and validated == {"1"}


def test_last_ckpt_holds_the_final_epoch_when_the_last_epoch_is_not_validated(make_config, tmp_path):
    """Lightning's ModelCheckpoint saves only after validations when check_val_every_n_epoch != 1: without
    save_on_train_epoch_end, last.ckpt would hold epoch 1 of 3 (none at all with max_epochs=1)."""
    results = run(make_config("data.category=brick", "trainer.max_epochs=3", "trainer.check_val_every_n_epoch=2",
                              "~callbacks.test_pictures"))  # fmt: skip
    brick = results["categories"]["brick"]
    last = torch.load(tmp_path / "out" / "brick" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 2 == brick["test_ckpt"]["epoch"] and brick["epochs"] == 3  # the tested, final model
    best = {k.removeprefix("val/"): {"value": v, "epoch": e} for k, (v, e) in last["best_epochs"].items()}
    assert {k: best[k] for k in brick["best"]} == brick["best"]  # its best-so-far records: epoch 1's validation
    assert {v["epoch"] for v in brick["best"].values()} == {1}


def test_gpu_preset_brings_batch_sizes_that_the_command_line_and_presets_override(make_config):
    cfg = make_config("trainer=gpu", tiny=False)
    assert (cfg.trainer.accelerator, cfg.data.batch_size, cfg.data.eval_batch_size) == ("gpu", 8, 32)
    assert cfg.model.net.compile_correlation is True
    assert make_config("trainer=gpu", "data.batch_size=2", tiny=False).data.batch_size == 2
    assert make_config("trainer=gpu", "experiment=paper_mvtec", tiny=False).data.batch_size == 1  # authors: 1
    assert make_config("trainer=cpu", tiny=False).data.batch_size == 1
