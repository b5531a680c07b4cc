"""A short training logged to W&B in offline mode, read back from the offline run files."""

import json
import re
from pathlib import Path

import pytest

from fod_lightning.reporting.wandb_logger import resolve_mode, wandb_logger
from fod_lightning.run import run

wandb = pytest.importorskip("wandb")


def read_offline_run(run_dir):
    """Every record of an offline run's ``run-<id>.wandb`` file, decoded.

    The file is W&B's LevelDB-style log: a 7-byte header (":W&B", magic, version), then 32 KiB
    blocks of chunks (crc32 4 B, length 2 B little-endian, type 1 B: 1 full, 2 first, 3 middle,
    4 last) whose payloads join into serialized ``Record`` protos.
    """
    from wandb.proto import wandb_internal_pb2

    (path,) = run_dir.glob("run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, payload, records = 32768, 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # too little room for a chunk header: block padding
            pos += block - pos % block
            continue
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind = data[pos + 6]
        if kind == 0 and length == 0:
            break
        payload += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(payload)
            records.append(record)
            payload = b""
    return records


def test_offline_run_holds_metrics_config_and_image_table(make_config, tmp_path, monkeypatch, capfd, caplog):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "false")  # W&B's own warnings shown, to see that none is about anonymous
    cfg = make_config("logger=wandb", "data.category=brick", "task_name=wandb_test")
    run(cfg)
    said = capfd.readouterr().err + caplog.text
    assert "anonymous setting" not in said and "litlogger" not in said  # foreign tips and warnings are silenced
    runs = sorted((tmp_path / "out" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2, runs  # the category's run and the closing summary run
    history_keys, config, summary_keys, names, groups, tags, job_types = set(), {}, set(), set(), set(), set(), set()
    staged = []
    for run_dir in runs:
        for record in read_offline_run(run_dir):
            kind = record.WhichOneof("record_type")
            if kind == "history":
                history_keys |= {item.key or item.nested_key[0] for item in record.history.item}
            elif kind == "config":
                config |= {item.key: json.loads(item.value_json) for item in record.config.update}
            elif kind == "summary":
                summary_keys |= {item.key or item.nested_key[0] for item in record.summary.update}
            elif kind == "run":
                names.add(record.run.display_name)
                groups.add(record.run.run_group)
                tags |= set(record.run.tags)
                job_types.add(record.run.job_type)
            elif kind == "artifact":
                staged += [(run_dir, c.path, Path(c.local_path)) for c in record.artifact.manifest.contents]
    assert names == {"brick-seed3407", "summary"} and groups == {"wandb_test"}
    assert {"thresholds/image", "thresholds/pixel", "thresholds/statement"} <= summary_keys
    assert job_types == {"train", "summary"}
    assert {"textures", "brick", "tf_efficientnet_lite0"} <= tags
    assert {"train/stage0/rec", "train/stage1/inter_ent", "val/image_auroc", "val/image_auroc_best",
            "test/pixel_aupro", "sigma/stage0/layer0/inter_x"} <= history_keys  # fmt: skip
    assert "test/brick/predictions" in history_keys and "summary/per_category" in history_keys
    # the category's figures too, and the summary figure
    assert {"test/brick/roc_histogram", "test/brick/pro_curve", "test/brick/training_losses",
            "test/brick/validation_metrics", "summary/figure"} <= history_keys  # fmt: skip
    assert config["model"]["net"]["d_models"] == [16, 32] and config["data"]["category"] == "brick"
    assert not {"d_models", "lambda1", "n_heads"} & set(config)  # the config once, nested, no flat copies
    # the table's pixels live inside the run's own folder (an offline run copied elsewhere keeps them)
    panel_name = r"/\d{3}_(good|scratch|stain|contamination)_\d+\.png$"
    panels = [name for _, name, _ in staged if re.search(panel_name, name)]
    assert len(panels) == 5
    for run_dir, _, path in staged:
        assert path.is_file() and path.resolve().is_relative_to(run_dir.resolve()), path
    tables = list((runs[0] / "files" / "media" / "table").rglob("*.table.json"))
    table = json.loads(tables[0].read_text())
    assert table["columns"][:4] == ["path", "defect", "label", "score"] and len(table["data"]) == 5


def test_mode_falls_back_to_offline_without_a_server(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    assert resolve_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode("auto") == "disabled"
    assert resolve_mode("online") == "online"


def test_no_unreachable_notice_when_offline_was_asked_for(monkeypatch, capsys):
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_logger(mode="auto", project="p")._wandb_init["mode"] == "offline"
    assert wandb_logger(mode="offline", project="p")._wandb_init["mode"] == "offline"
    assert "unreachable" not in capsys.readouterr().out
    monkeypatch.delenv("WANDB_MODE")
    assert wandb_logger(mode="auto", project="p")._wandb_init["mode"] == "offline"  # the fallback says so
    assert "W&B server unreachable: logging offline" in capsys.readouterr().out


def test_without_wandb_installed_logging_to_wandb_stops_with_one_line(monkeypatch, tmp_path, capsys):
    import importlib.util

    from fod_lightning.errors import ConfigError
    from fod_lightning.reporting.wandb_logger import wandb_logger
    from fod_lightning.summarize import main as summarize

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match=r"needs the wandb package: pip install 'fod_lightning\[wandb\]'"):
        wandb_logger(mode="offline", save_dir=str(tmp_path))
    from fod_lightning.reporting.results import build_results, write_results

    run = {"status": "done", "seed": 1, "overrides": [], "swept": {}}
    write_results(
        build_results("bench", "lite0", "paper", "last", {"a": {"image_auroc": 0.9}}, run), tmp_path / "results.json"
    )
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_status:
        summarize([str(tmp_path), "--wandb"])
    assert exit_status.value.code == 2
    assert "error: logging to W&B needs the wandb package" in capsys.readouterr().err
