"""ONNX export of any fitted model (``python -m fod_lightning.export``), checked against the torch model, with its
preprocessing contract beside it.

Writes ``model.onnx`` (input ``images`` (N, 3, H, W) float32, normalised per the contract; outputs ``image_score``
(N,) and ``anomaly_map`` (N, H, W); N is dynamic) and ``model.json`` (image size, resize rule, mean, std,
thresholds, input/output names and shapes, what the model was fitted on, versions, opset, measured parity).
Before anything is written, onnxruntime scores random normalised images and must match ``net.score_images`` to
``rtol`` (relative error max|onnx - torch| / max|torch|, per output). Both files are written atomically. Exit
codes: 0 done; 1 parity failed (nothing written); 2 a user error (one line on stderr).

The torch.onnx dynamo exporter (``torch.export`` + onnxscript) is used, at opset 18, torchlib's own opset.
"""

import json
import logging
from contextlib import ExitStack
from importlib import metadata
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from fod_lightning.data.contract import PREPROCESSING
from fod_lightning.deploy.checkpoint import command_model
from fod_lightning.errors import ConfigError, UserError
from fod_lightning.models.base import AnomalyNet
from fod_lightning.utils.atomic import atomic_path

FORMATS = ("onnx",)
INPUTS, OUTPUTS = ("images",), ("image_score", "anomaly_map")


class ParityError(UserError):
    """The exported model does not reproduce the torch model."""


class ScoreImages(nn.Module):
    """The export-shaped forward: normalised images (N, 3, H, W) -> image_score (N,), anomaly_map (N, H, W)."""

    def __init__(self, net: AnomalyNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.score_images(images)


def relative_error(actual, expected: torch.Tensor) -> float:
    """max|actual - expected| / max|expected| (the denominator floored at 1e-12)."""
    diff = (torch.as_tensor(actual) - expected).abs().max()
    return float(diff / expected.abs().max().clamp_min(1e-12))


def export_onnx(module: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    """Trace ``module`` on ``example`` (N, 3, H, W) with a dynamic batch dimension and save one ONNX file."""
    for name in ("onnxscript", "onnx_ir"):  # their graph optimizers log every rewrite at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        program = torch.onnx.export(module, (example,), None, dynamo=True, opset_version=opset, verbose=False,
                                    input_names=list(INPUTS), output_names=list(OUTPUTS),
                                    dynamic_shapes={"images": {0: batch}})  # fmt: skip
    program.save(str(path), external_data=False)  # weights inside: one file to rename (models < 2 GB)


def onnx_parity(path: Path, net: AnomalyNet, batches: list[torch.Tensor]) -> dict[str, float]:
    """Largest relative error per output of onnxruntime on ``path`` against ``net.score_images`` over ``batches``."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    errors = dict.fromkeys(OUTPUTS, 0.0)
    for images in batches:
        with torch.no_grad():
            expected = net.score_images(images)
        actual = session.run(list(OUTPUTS), {INPUTS[0]: images.numpy()})
        for name, a, e in zip(OUTPUTS, actual, expected):
            errors[name] = max(errors[name], relative_error(a, e))
    return errors


def contract_document(model, output: Path, opset: int, parity: dict) -> dict:
    """The JSON written beside the model: what a runtime needs to feed it and read its outputs."""
    contract, (height, width), thresholds = model.contract, model.contract.shape, model.thresholds
    return {
        "model": output.name, "format": "onnx",
        **contract.to_dict(),
        "preprocessing": PREPROCESSING,
        "thresholds": {"image": thresholds.image, "pixel": thresholds.pixel} if thresholds.calibrated else None,
        "inputs": [{"name": "images", "shape": ["batch", 3, height, width], "dtype": "float32"}],
        "outputs": [{"name": "image_score", "shape": ["batch"], "dtype": "float32"},
                    {"name": "anomaly_map", "shape": ["batch", height, width], "dtype": "float32"}],
        "fitted_on": model.fitted_on,
        "fod_lightning_version": metadata.version("fod_lightning"), "torch_version": torch.__version__,
        "exporter": "torch.onnx (dynamo)", "opset": opset,
        "parity": parity,
    }  # fmt: skip


def export(cfg: DictConfig) -> dict:
    """Export ``cfg.ckpt_path`` to ``cfg.output`` and its contract to ``<output stem>.json``; return the contract."""
    if cfg.format not in FORMATS:
        raise ConfigError(f"format={cfg.format} is not supported: use one of {', '.join(FORMATS)}")
    output = Path(cfg.output).expanduser()
    if output.is_dir():
        raise ConfigError(f"output={cfg.output} is a folder: name the model file, e.g. output={output / 'model.onnx'}")
    if output.suffix == ".json":
        raise ConfigError(f"output={cfg.output} would be overwritten by the contract: name the model file *.onnx")
    if int(cfg.parity_images) < 1:
        raise ConfigError(f"parity_images={cfg.parity_images} must be at least 1")
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ConfigError(f"format=onnx needs {err.name}: pip install -e '.[export]'") from err
    model = command_model(cfg)
    net, opset, contract = model.net, int(cfg.opset), model.contract
    # Parity images: a batch of parity_images and a single image (the batch dimension is dynamic).
    batches = [contract.random_images(int(cfg.parity_images), seed=1), contract.random_images(1, seed=2)]
    example = contract.random_images(2, seed=0)
    output.parent.mkdir(parents=True, exist_ok=True)
    with ExitStack() as files:  # both files renamed into place at the end, or neither
        tmp_json = files.enter_context(atomic_path(output.with_suffix(".json")))
        tmp_model = files.enter_context(atomic_path(output))
        with net.export_mode(example):
            export_onnx(ScoreImages(net).eval(), example, tmp_model, opset)
        errors = onnx_parity(tmp_model, net, batches)  # against the path evaluation uses
        parity = {"relative_error": errors, "rtol": float(cfg.rtol), "images": int(cfg.parity_images) + 1,
                  "definition": "max|onnx - torch| / max|torch| per output, random normalised images"}  # fmt: skip
        failed = {k: v for k, v in errors.items() if not v < cfg.rtol}
        if failed:
            found = ", ".join(f"{k} {v:.2e}" for k, v in failed.items())
            raise ParityError(f"the ONNX model does not match the torch model: relative error {found} > rtol="
                              f"{cfg.rtol}; nothing was written")  # fmt: skip
        document = contract_document(model, output, opset, parity)
        tmp_json.write_text(json.dumps(document, indent=2) + "\n")
    return document
