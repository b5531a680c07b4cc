"""A fast end-to-end run on every benchmark layout, the from_train protocol and summarize."""

import json

import pytest

from fod_lightning import summarize
from fod_lightning.metrics.collection import METRICS
from fod_lightning.run import run
from helpers.datasets import write_btad, write_folder, write_mvtec, write_mvtec3d, write_visa

LAYOUTS = {
    "mvtec": (write_mvtec, "bottle"),
    "btad": (write_btad, "03"),
    "mvtec3d": (write_mvtec3d, "bagel"),
    "visa": (lambda root: write_visa(root), "candle"),
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_end_to_end_on_each_benchmark_layout(make_config, tmp_path, name):
    writer, category = LAYOUTS[name]
    if name == "visa":
        writer(tmp_path / "ds")
    else:
        writer(tmp_path / "ds", category)
    cfg = make_config(f"data={name}", f"data.root={tmp_path / 'ds'}", f"data.category={category}", textures=False)
    results = run(cfg)
    metrics = results["categories"][category]
    assert {"image_auroc", "pixel_auroc", "pixel_aupro", "image_f1_max", "pixel_f1_max"} <= metrics.keys()
    assert results["protocol"] == "paper"


def test_classification_only_folder_skips_pixel_metrics(make_config, tmp_path):
    write_folder(tmp_path / "ds", masks=False)
    cfg = make_config("data=folder", f"data.root={tmp_path / 'ds'}", "data.category=widget",
                      "data.abnormal_dirs=[defects/scratch,defects/dent]", textures=False)  # fmt: skip
    metrics = run(cfg)["categories"]["widget"]
    assert "image_auroc" in metrics and not any(k.startswith("pixel_") for k in metrics)


def test_from_train_protocol_validates_on_held_out_defects_and_says_so(make_config, tmp_path):
    cfg = make_config("data.category=brick", "data.n_train=6", "data.val_protocol=from_train", "data.val_fraction=0.34")
    results = run(cfg)
    assert results["protocol"] == "from_train"
    assert "image_auroc" in results["categories"]["brick"]["best"]

    from fod_lightning.data.textures import TexturesDataModule

    dm = TexturesDataModule(str(tmp_path / "data" / "fod_textures"), "brick", n_train=6, n_test_good=2,
                            n_test_per_defect=1, crop_size=64, image_size=32, val_protocol="from_train",
                            val_fraction=0.34)  # fmt: skip
    dm.setup()
    held = {s.image_path for s in dm.split("val").samples}
    assert len(held) == 2 and len(dm.split("train")) == 4
    assert not held & {s.image_path for s in dm.split("train").samples}
    val = dm.split("val")
    labels = [val[i]["label"] for i in range(len(val))]
    assert labels == [0, 0, 1, 1]
    assert all(val[i]["mask"].any() for i in (2, 3)) and not val[0]["mask"].any()
    assert not {s.image_path for s in dm.split("test").samples} & held


def test_summarize_reads_results_written_before_runs_recorded_themselves(tmp_path, capsys):
    for job, category in enumerate(["brick", "gravel"]):
        (tmp_path / "multi" / str(job)).mkdir(parents=True)
        metrics = {"image_auroc": 0.5 + job / 4, "pixel_auroc": 0.9}
        (tmp_path / "multi" / str(job) / "results.json").write_text(json.dumps(
            {"benchmark": "b", "backbone": "x", "protocol": "paper", "categories": {category: metrics}}))  # fmt: skip
    assert summarize.main([str(tmp_path / "multi")]) == 0
    md = (tmp_path / "multi" / "summary.md").read_text()
    assert "| brick | 1 | 0.5000 | 0.9000 |" in md and "| **mean** | 1 | 0.6250 | 0.9000 |" in md
    assert md.index("### test") < md.index("### best") and "2 of 2 jobs finished; 1 setting(s)" in md
    csv_lines = (tmp_path / "multi" / "summary.csv").read_text().splitlines()
    assert csv_lines[0].startswith("setting,reading,category,seeds,image_auroc_mean,image_auroc_std")
    empty = "," * (2 * len(METRICS) - 3)  # the mean and std of every other metric
    assert f"default,test,mean,1,0.625000,,0.900000{empty}" in csv_lines
    with pytest.raises(SystemExit) as exit_status:
        summarize.main([str(tmp_path / "empty")])
    assert exit_status.value.code == 2
    assert "no results.json below" in capsys.readouterr().err
