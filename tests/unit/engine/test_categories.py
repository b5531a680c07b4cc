"""data.category: one name, a list (one job trains each), or all = the categories present under data.root."""

import shutil

import pytest

from fod_lightning.data.mvtec import MVTEC_CATEGORIES
from fod_lightning.data.samples import DatasetLayoutError
from fod_lightning.engine.categories import categories_of
from fod_lightning.errors import ConfigError
from fod_lightning.run import run
from helpers.datasets import write_folder, write_mvtec, write_visa


def mvtec_with_a_custom_category(root):
    write_mvtec(root, "bottle")
    shutil.copytree(root / "bottle", root / "widget")  # the user's own category in the MVTec AD layout
    (root / "notes").mkdir()  # not a category: no train/ folder
    return root


def test_all_means_the_categories_on_disk_reporting_missing_and_custom_ones(make_config, tmp_path):
    root = mvtec_with_a_custom_category(tmp_path / "ds")
    found = categories_of(make_config("data=mvtec", f"data.root={root}", "data.category=all", textures=False))
    assert found.names == ["bottle", "widget"] and found.custom == ["widget"]
    assert found.missing == [c for c in MVTEC_CATEGORIES if c != "bottle"]
    notes = found.notes("MVTec AD", str(root))
    assert notes[0].startswith(f"MVTec AD categories missing under {root} (not run): cable, capsule")
    assert "other names, run as categories: widget" in notes[1]


def test_one_job_trains_each_category_of_a_list_or_of_all_and_records_the_notes(make_config, tmp_path):
    root = mvtec_with_a_custom_category(tmp_path / "ds")
    listed = categories_of(make_config("data=mvtec", f"data.root={root}", "data.category=[widget,bottle]",
                                       textures=False))  # fmt: skip
    assert (listed.names, listed.missing, listed.custom) == (["widget", "bottle"], [], [])
    results = run(make_config("data=mvtec", f"data.root={root}", "data.category=all", textures=False))
    assert list(results["categories"]) == ["bottle", "widget"] == results["run"]["categories_planned"]
    layout = [n for n in results["notes"] if "categor" in n.split(":")[0]]  # besides any advice on the tiny models
    assert len(layout) == 2 and "run as categories: widget" in layout[1]


def test_unknown_names_and_folder_data_get_one_line_fixes(make_config, tmp_path):
    root = mvtec_with_a_custom_category(tmp_path / "ds")
    with pytest.raises(DatasetLayoutError, match="unknown MVTec AD category 'notes'.* or a folder <data.root>/notes"):
        categories_of(make_config("data=mvtec", f"data.root={root}", "data.category=[bottle,notes]", textures=False))
    with pytest.raises(DatasetLayoutError, match="no MVTec AD category folder under"):
        categories_of(make_config("data=mvtec", f"data.root={root / 'notes'}", "data.category=all", textures=False))
    write_folder(tmp_path / "f", masks=False)
    with pytest.raises(ConfigError, match="folder data is one category: set data.category=NAME"):
        categories_of(make_config("data=folder", f"data.root={tmp_path / 'f'}", "data.category=all", textures=False))


def test_visa_categories_are_the_objects_of_its_split_file(make_config, tmp_path):
    write_visa(tmp_path / "visa")
    found = categories_of(make_config("data=visa", f"data.root={tmp_path / 'visa'}", "data.category=all",
                                      textures=False))  # fmt: skip
    assert found.names == ["candle", "pcb1"] and "capsules" in found.missing and found.custom == []
