"""Importing the authors' checkpoints: layout, shapes read from tensors, scores equal to the authors'
procedure, and refusal of files that could run code or do not fit the backbone."""

import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch

from fod_lightning.bench.baseline import score as authors_score
from fod_lightning.deploy.checkpoint import CheckpointError
from fod_lightning.models.backbone import FeatureExtractor
from fod_lightning.models.fod.model import FODStage
from fod_lightning.training.fod.authors_files import (
    is_official_checkpoint,
    load_official,
    read_official_state,
    read_reference_pickle,
)
from helpers.authors_files import SIZE, authors_like_fod, save_authors_files


@pytest.fixture(scope="module")
def backbone():
    return FeatureExtractor("tf_efficientnet_lite0", weights="efficientnet_lite0_package")  # (40, 112) at (8, 16)


@pytest.fixture(scope="module")
def original(backbone):
    return authors_like_fod(backbone)


def relative_error(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_loaded_checkpoint_scores_as_the_authors_procedure(original, backbone, tmp_path):
    ckpt = save_authors_files(original, tmp_path)
    assert is_official_checkpoint(ckpt)
    model = load_official(ckpt, None, backbone)  # the reference beside it: bottle.pkl
    config = model.net.config
    assert (config["d_models"], config["n_heads"], config["depth"], config["ffn_ratio"]) == ([16, 32], 2, 2, 4)
    assert config["with_intra"] and config["with_inter"] and not model.training
    assert model.contract.to_dict() == {
        "image_size": SIZE,
        "resize": "square",
        "mean": list(backbone.mean),
        "std": list(backbone.std),
    }
    assert model.fitted_on == {"benchmark": "authors' checkpoint", "category": "bottle", "root": str(tmp_path)}
    assert model.thresholds.calibrated is None

    images = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        scores, maps = model.net.score_images(images)
        own_scores, own_maps = original.score_images(images)
    # the authors test with batch 1 (their max over the inter score is over the whole tensor)
    authors = [authors_score(original, image[None]) for image in images]
    authors_maps, authors_scores = np.concatenate([m for m, _ in authors]), np.concatenate([s for _, s in authors])
    assert relative_error(maps, authors_maps) < 1e-4
    assert relative_error(scores, authors_scores) < 1e-4
    assert torch.equal(maps, own_maps) and torch.equal(scores, own_scores)  # same weights, same computation


@pytest.mark.parametrize("protocol", range(6))
def test_reference_pickles_of_any_protocol_and_old_numpy_are_read(protocol, tmp_path):
    arrays = OrderedDict(layer1=np.arange(8, dtype=np.float32).reshape(2, 4))
    data = pickle.dumps(arrays, protocol=protocol)
    if protocol <= 2:  # text globals: as written by the authors' numpy 1.x
        data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    (tmp_path / "a.pkl").write_bytes(data)
    np.testing.assert_array_equal(read_reference_pickle(tmp_path / "a.pkl")["layer1"], arrays["layer1"])


class RunsCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class Custom:
    pass


def test_pickle_that_would_run_code_is_refused(tmp_path):
    marker, path = tmp_path / "pwned", tmp_path / "bottle.pkl"
    path.write_bytes(pickle.dumps({"layer1": RunsCommand(marker)}))
    with pytest.raises(CheckpointError, match="not a numpy array or plain container") as err:
        read_reference_pickle(path)
    assert str(path) in str(err.value) and "system" in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [([np.zeros((2, 4), np.float32)], "not a dict"), ({"layer1": np.zeros((2, 2, 2), np.float32)}, "not a float")],
)
def test_reference_pickle_of_other_contents_is_refused(content, message, tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(content))
    with pytest.raises(CheckpointError, match=message):
        read_reference_pickle(path)
    with pytest.raises(CheckpointError, match=r"missing.pkl do not exist: give the authors' <class>.pkl as reader="
                                              r"fod_authors reader.reference_features=FILE \(without it, <class>.pkl "
                                              r"beside"):  # fmt: skip
        read_reference_pickle(tmp_path / "missing.pkl")


@pytest.mark.parametrize("kind", ["runs_command", "custom_class", "lightning_layout"])
def test_checkpoint_not_in_the_authors_tensor_layout_is_refused(kind, tmp_path):
    marker, path = tmp_path / "pwned", tmp_path / "bottle-img.pth"
    content = {
        "runs_command": {"state_dict": [RunsCommand(marker)]},
        "custom_class": {"state_dict": [{"w": torch.zeros(1)}], "extra": Custom()},
        "lightning_layout": {"state_dict": {"net.w": torch.zeros(1)}},
    }[kind]
    torch.save(content, path)
    with pytest.raises(CheckpointError) as err:
        read_official_state(path)
    message = str(err.value)
    assert str(path) in message and "{'state_dict': [stage0_state_dict, stage1_state_dict]}" in message
    assert "\n" not in message and not marker.exists()
    assert not is_official_checkpoint(path)


def test_checkpoint_of_another_backbone_is_refused(backbone, tmp_path):
    stages = [FODStage(c, d, 2, 1, 4, 0.0, True, True, False) for c, d in ((512, 16), (1024, 32))]
    path = tmp_path / "carpet-img.pth"
    torch.save({"state_dict": [s.state_dict() for s in stages]}, path)
    with pytest.raises(CheckpointError) as err:
        load_official(path, tmp_path / "carpet.pkl", backbone)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    assert "expects 512 backbone channels" in message and "tf_efficientnet_lite0 gives 40 at stride 8" in message
    assert "model/net/backbone=wide_resnet50_2" in message
