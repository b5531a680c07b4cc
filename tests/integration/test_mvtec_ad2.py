"""MVTec AD 2 on tiny generated trees in its layout (odd, non-square sizes): a run on test_public with AU-PRO@0.05,
SegF1 and pixel metrics at each image's own size; the private splits' server files, checked and packed; and every
refusal as one line naming the path and the fix."""

import tarfile

import pytest
from hydra.core.global_hydra import GlobalHydra

from fod_lightning.data.mvtec_ad2 import MVTecAD2DataModule
from fod_lightning.data.samples import DatasetLayoutError
from fod_lightning.errors import ConfigError, UserError
from fod_lightning.run import run
from helpers.ad2_layout import AD2_SIZES, write_ad2
from helpers.configs import TINY_RUN, compose_config

AD2 = ["experiment=mvtec_ad2", *TINY_RUN, "model=patchcore", "data.category=all"]


def ad2_config(tmp_path, root, *overrides):
    return compose_config(tmp_path / "run", [*AD2, f"data.root={root}", *overrides])


def test_a_public_run_scores_at_each_images_own_size_with_the_benchmarks_metrics(tmp_path):
    root = write_ad2(tmp_path / "ad2", n_train=6, n_val=4)
    results = run(ad2_config(tmp_path, root))
    GlobalHydra.instance().clear()
    assert set(results["categories"]) == set(AD2_SIZES)
    for obj, (h, w) in AD2_SIZES.items():
        record = results["categories"][obj]
        assert record["aupro_fpr_limit"] == 0.05 and 0 <= record["pixel_aupro"] <= 1
        assert record["pixel_metrics"]["resolution"] == "original" and record["pixel_metrics"]["mode"] == "exact"
        assert record["pixel_metrics"]["pixels"] == (2 + 3) * h * w  # every test_public image at its own size
        assert 0 <= record["seg_f1"] <= 1 and record["thresholds"]["num_images"] == 4  # validation/good alone
        assert record["thresholds"]["held_out"]


def test_the_private_splits_give_the_servers_files_checked_and_packed(tmp_path):
    root = write_ad2(tmp_path / "ad2", n_train=6, n_val=4)
    results = run(ad2_config(tmp_path, root, "data.test_split=private", "test=false", "submission=true"))
    GlobalHydra.instance().clear()
    archive = tmp_path / "run" / "out" / "submission.tar.gz"
    assert results["run"]["submission"]["archive"] == str(archive) and archive.is_file()
    with tarfile.open(archive) as tar:
        names = [n for n in tar.getnames() if n.endswith((".tiff", ".png"))]
    # 3 images per private split, 2 splits, 2 objects, a TIFF and a PNG each
    assert len(names) == 3 * 2 * 2 * 2 and "submission/anomaly_images/can/test_private/000_regular.tiff" in names
    again = ad2_config(tmp_path, root, "data.test_split=private", "test=false", "submission=true", "overwrite=true")
    with pytest.raises(UserError, match=r"submission folder .*/submission is not empty: choose a new folder"):
        run(again)  # never written over


def test_refusals_name_the_path_and_the_fix(tmp_path):
    root = write_ad2(tmp_path / "ad2")
    with pytest.raises(ConfigError, match=r"data.test_split=private has no ground truth .* test=false submission=true"):
        run(ad2_config(tmp_path / "a", root, "data.test_split=private"))
    GlobalHydra.instance().clear()
    (root / "can" / "test_public" / "ground_truth" / "bad" / "000_regular_mask.png").rename(tmp_path / "moved.png")
    dm = MVTecAD2DataModule(str(root), "can")
    with pytest.raises(DatasetLayoutError, match=r"anomalous image .*can/test_public/bad/000_regular.png has no mask "
                                                 r"at .*000_regular_mask.png: add the mask"):  # fmt: skip
        dm.setup()
    (tmp_path / "moved.png").rename(root / "can" / "test_public" / "ground_truth" / "bad" / "000_regular_mask.png")
    stray = root / "can" / "test_public" / "ground_truth" / "bad" / "999_regular_mask.png"
    stray.write_bytes((root / "can" / "test_public" / "ground_truth" / "bad" / "000_regular_mask.png").read_bytes())
    with pytest.raises(DatasetLayoutError, match=r"999_regular_mask.png"):
        MVTecAD2DataModule(str(root), "can").setup()
    stray.unlink()
    (root / "vial" / "validation" / "good").rename(root / "vial" / "validation" / "gone")
    with pytest.raises(DatasetLayoutError, match=r"MVTec AD 2 folder .*vial/validation/good does not exist: add it"):
        MVTecAD2DataModule(str(root), "vial").setup()
    broken = sorted((root / "can" / "train" / "good").iterdir())[0]
    broken.write_bytes(b"not a png")
    with pytest.raises(DatasetLayoutError, match=rf"cannot read image {broken}"):
        MVTecAD2DataModule(str(root), "can").setup()
    with pytest.raises(ConfigError, match="data.val_protocol=paper would validate on the test split"):
        MVTecAD2DataModule(str(root), "can", val_protocol="paper")
    with pytest.raises(DatasetLayoutError, match=r"unknown MVTec AD 2 category 'tea': use one of can, fabric"):
        MVTecAD2DataModule(str(root), "tea")
