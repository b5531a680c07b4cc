"""Every config composes and instantiates."""

from pathlib import Path

import hydra
import pytest
from lightning import Trainer

from fod_lightning.engine.categories import categories_of
from fod_lightning.run import CONFIG_DIR

CONF = Path(CONFIG_DIR)


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_default_config_builds_every_object(make_config):
    cfg = make_config()
    assert categories_of(cfg).names == ["brick", "grass", "gravel"]
    model = hydra.utils.instantiate(cfg.model)
    assert model.net.backbone.weights_source == "efficientnet_lite0_package"
    optimizer = model.configure_optimizers()
    assert type(optimizer).__name__ == "Adam" and optimizer.defaults["lr"] == 1e-4
    assert isinstance(hydra.utils.instantiate(cfg.trainer), Trainer)
    with_category = cfg.copy()
    with_category.data.category = "brick"
    assert hydra.utils.instantiate(with_category.data).category == "brick"


def test_authors_defaults_in_the_model_config(make_config):
    cfg = make_config(tiny=False)
    m, net = cfg.model, cfg.model.net
    assert (list(net.d_models), net.n_heads, net.depth, net.dropout) == ([256, 512], 8, 3, 0.0)
    assert (m.lambda1, m.lambda2, net.blur_sigma, net.attention_out_proj) == (0.5, 0.5, 4.0, False)
    assert not m.legacy_zero_grad
    assert cfg.data.batch_size == 1 and cfg.seed == 3407


@pytest.mark.parametrize("backbone", options("model/net/backbone"))
def test_backbone_configs_instantiate(make_config, backbone):
    weights = [] if backbone == "tf_efficientnet_lite0" else ["model.net.backbone.weights=random"]
    extractor = hydra.utils.instantiate(make_config(f"model/net/backbone={backbone}", *weights).model.net.backbone)
    assert extractor.strides == (8, 16) and len(extractor.channels) == 2
    # the data contract: the data module normalises with the backbone's statistics
    cfg = make_config(f"model/net/backbone={backbone}", *weights)
    assert list(cfg.data.mean) == list(extractor.mean) and list(cfg.data.std) == list(extractor.std)


@pytest.mark.parametrize("group", ["trainer", "logger", "callbacks", "experiment", "debug"])
def test_group_options_instantiate(make_config, group):
    for option in options(group):
        gpu = group == "trainer" and option == "gpu"
        paper, ad2 = option.startswith("paper_"), option.startswith("mvtec_ad2")
        cfg = make_config(f"{group}={option}", tiny=not (gpu or paper or ad2))
        if paper:  # the authors' settings on a real benchmark
            assert cfg.model.net.backbone.name == "wide_resnet50_2" and cfg.data.image_size == 256
            assert (cfg.trainer.max_epochs, cfg.data.batch_size, cfg.seed) == (100, 1, 3407)
            assert cfg.data._target_.startswith(f"fod_lightning.data.{option.removeprefix('paper_')}.")
            continue
        if ad2:  # MVTec AD 2's protocol: validation/good only, AU-PRO to 0.05, pixel metrics at full size
            assert cfg.data._target_ == "fod_lightning.data.mvtec_ad2.MVTecAD2DataModule"
            assert (cfg.model.aupro_fpr_limit, cfg.data.val_protocol, cfg.data.metrics_resolution) == (
                0.05, "from_train", "original")  # fmt: skip
            assert (cfg.model.net.memory_weight > 0) == option.endswith("fod_plus")
            continue
        if group == "experiment":  # the ablations build their model
            model = hydra.utils.instantiate(cfg.model)
            assert (model.net.stages[0].with_intra, model.net.stages[0].with_inter) == (
                cfg.model.net.with_intra, cfg.model.net.with_inter)  # fmt: skip
        node = cfg.get(group) if group not in ("experiment", "debug") else cfg.trainer
        if group in ("logger", "callbacks"):
            objects = [hydra.utils.instantiate(c) for c in (node or {}).values()]
            assert all(o is not None for o in objects)
        elif gpu:
            assert node.accelerator == "gpu"  # no GPU here: composing is what can be checked
        elif option == "ddp":  # devices and nodes are overrides; on CPU the ranks are processes (gloo)
            ddp = make_config("trainer=ddp", "trainer.devices=3", "trainer.num_nodes=2")
            trainer = hydra.utils.instantiate(ddp.trainer)
            assert type(trainer.strategy).__name__ == "DDPStrategy"
            assert (trainer.num_devices, trainer.num_nodes) == (3, 2)
            assert trainer.strategy._get_process_group_backend() == "gloo"
        else:
            assert isinstance(hydra.utils.instantiate(cfg.trainer), Trainer)


@pytest.mark.parametrize("data", options("data"))
def test_data_configs_instantiate(make_config, data):
    cfg = make_config(f"data={data}", tiny=False)
    cls = hydra.utils.get_class(cfg.data._target_)
    size = cfg.data.image_size
    assert cls.categories and (size == "auto" if data == "folder" else size % 16 == 0)  # folder: from its images
    category = cfg.data.category if cfg.data.category != "all" else cls.categories[-1]
    datamodule = hydra.utils.instantiate(cfg.data, category=category)  # the files are read at setup
    # your own data: never validated on its few defects; MVTec AD 2: on validation/good, its only normal hold-out
    protocol = "from_train" if data in ("folder", "mvtec_ad2") else "paper"
    assert datamodule.category == category and datamodule.val_protocol == protocol and not datamodule.augment


def test_paper_preset_builds_the_authors_model(make_config):
    cfg = make_config("experiment=paper_mvtec", "model.net.backbone.weights=random", tiny=False)
    model = hydra.utils.instantiate(cfg.model)
    trainable = sum(p.numel() for p in model.net.stages.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.net.stages.parameters() if not p.requires_grad)
    # reference section 1.3: 17.81 M in the state dict, of which 1.97 M never used (the out projections)
    assert trainable + frozen == 3578208 + 14234208
    assert frozen == 3 * 2 * (256 * 256 + 256) + 3 * 2 * (512 * 512 + 512)


@pytest.mark.parametrize("preset", ["paper_mvtec", "paper_btad", "paper_mvtec3d", "paper_visa"])
def test_the_paper_presets_keep_the_authors_score(make_config, preset):
    net = make_config(f"experiment={preset}", tiny=False).model.net
    assert (net.memory_weight, net.stage_mix) == (0.0, "mean")


def test_fod_plus_adds_the_patch_memory_chosen_on_held_out_validation(make_config):
    cfg = make_config("experiment=fod_plus")
    assert (cfg.model.net.memory_weight, cfg.model.net.memory_ratio, cfg.model.net.stage_mix) == (0.75, 1.0, "mean")
    assert cfg.model.net.memory_max_patches == 50000  # a coreset beyond 48 training images at 256 px
    assert cfg.data.val_protocol == "from_train" and cfg.task_name == "fod_plus"
    net = hydra.utils.instantiate(cfg.model).net
    assert net.memory is not None and net.memory_weight == 0.75 and net.memory.max_patches == 50000


def test_backbone_given_with_a_dot_instead_of_the_group_slash_is_explained(make_config):
    """`model.net.backbone=NAME` replaces the backbone config by a string; the run says to use `model/net/backbone=`."""
    from fod_lightning.errors import ConfigError
    from fod_lightning.run import run

    with pytest.raises(ConfigError, match=r"model.net.backbone=.tf_efficientnet_b6. .* model/net/backbone=NAME"):
        run(make_config("model.net.backbone=tf_efficientnet_b6"))
    assert make_config("model/net/backbone=tf_efficientnet_b6").model.net.backbone.name == "tf_efficientnet_b6"
