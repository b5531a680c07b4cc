"""``python -m fod_lightning.bench scale``: what a real benchmark's category costs, phase by phase, for FOD, fod_plus,
PatchCore and PaDiM, with anomalib 2.7's PatchCore and PaDiM beside them where they do the same work.

An MVTec-sized category is generated from the embedded photos (``--train`` normal training crops, 240 by default, and
``--test`` test crops, a third of them defective, at ``--size`` px; ``--train 1000`` is VisA-sized). Each phase is timed
alone, with the peak RSS (the CUDA allocator's peak on a GPU):

- features: the frozen backbone over the training images (what FOD's feature cache and the baselines' fit read);
- fit: FOD and fod_plus: ``--steps`` training steps (batch 1), the epoch extrapolated; PatchCore: the bank of every
  training patch; PaDiM: the Gaussians;
- coreset: PatchCore's 10% greedy k-center coreset (the fast exact one), and anomalib's ``KCenterGreedy`` on its first
  ``--anomalib-selections`` selections, extrapolated (its cost per selection is constant); fod_plus: its memory's size;
- calibration: scoring the calibration images (a tenth of the training set);
- test scoring: the test images;
- metrics: every metric of the test split, exact, at the input size, and at ``--original`` px (the masks at their full
  resolution, streamed).

    python -m fod_lightning.bench scale --out experiments/2026-12-06_scale/scale_cpu.json
"""

import argparse
import datetime
import gc
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from fod_lightning.bench.measure import PeakMemory, write_record
from fod_lightning.data.textures import TexturesDataModule
from fod_lightning.metrics.collection import AnomalyMetrics
from fod_lightning.models.backbone import FeatureExtractor
from fod_lightning.models.fod.losses import phase_objectives, stage_losses
from fod_lightning.models.fod.model import FOD
from fod_lightning.models.padim import PaDiM
from fod_lightning.models.patchcore import PatchCore
from fod_lightning.utils.config_dir import CONFIG_DIR

MIB = 1024**2
PADIM_STRIDES = (4, 8, 16)  # conf/model/padim.yaml: the paper's three levels


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fod_lightning.bench scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--train", type=int, default=240, help="normal training images (MVTec AD: 60-391; VisA: ~1000)")
    p.add_argument("--test", type=int, default=100, help="test images, a third of them defective")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--original", type=int, default=1024, help="mask side of the metrics at original resolution")
    p.add_argument("--steps", type=int, default=10, help="FOD training steps timed (the epoch extrapolated)")
    p.add_argument("--models", default="fod,fod_plus,patchcore,padim")
    p.add_argument(
        "--anomalib", action="store_true", help="also anomalib 2.7's PatchCore coreset and PaDiM (fit, scoring)"
    )
    p.add_argument("--anomalib-selections", type=int, default=150)
    p.add_argument("--data-root", default="data/scale", help="where the generated category is written")
    p.add_argument("--out", default=None, help="JSON record to write")
    return p.parse_args(argv)


class Phases:
    """Times and peak memory of named phases, printed as they end."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.rows = device, []

    def run(self, model: str, phase: str, fn, note: str = "", **extra):
        gc.collect()
        # the allocator as in a run (a 64 KiB mmap threshold would time FOD's block temporaries as fresh pages)
        with PeakMemory(self.device, mmap_threshold=32 * MIB) as memory:
            start = time.perf_counter()
            out = fn()
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            seconds = time.perf_counter() - start
        row = {"model": model, "phase": phase, "seconds": seconds, "peak_mib": memory.peak / MIB, "note": note, **extra}
        self.rows.append(row)
        print(f"  {model:<22} {phase:<14} {seconds:10.2f} s  peak {memory.peak / MIB:8.0f} MiB  {note}", flush=True)
        return out


def category_images(args) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train, test images, test labels, test masks) of one generated category (brick), normalised for Lite0."""
    per_defect = max(1, args.test // 9)  # three defect types: a third of the test split
    datamodule = TexturesDataModule(args.data_root, "brick", image_size=args.size, photos=["brick", "grass"],
                                    n_train=args.train, n_test_good=args.test - 3 * per_defect,
                                    n_test_per_defect=per_defect, crop_size=args.size)  # fmt: skip
    train = datamodule.split("reference")
    test = datamodule.split("test")
    train_images = torch.stack([train[i]["image"] for i in range(len(train))])
    items = [test[i] for i in range(len(test))]
    return (train_images, torch.stack([it["image"] for it in items]), torch.tensor([it["label"] for it in items]),
            torch.stack([it["mask"] for it in items]))  # fmt: skip


def batches(images: torch.Tensor, device, size: int = 8):
    return (images[i : i + size].to(device) for i in range(0, len(images), size))


def backbone(strides: tuple[int, ...] = (8, 16)) -> FeatureExtractor:
    return FeatureExtractor("tf_efficientnet_lite0", strides=strides, weights="efficientnet_lite0_package")


def fod_plus_memory() -> dict:
    """The patch memory's settings of ``experiment=fod_plus`` (its weight, ratio and bound), read from the preset."""
    net = OmegaConf.load(Path(CONFIG_DIR) / "experiment" / "fod_plus.yaml").model.net
    return {key: net[key] for key in ("memory_weight", "memory_ratio", "memory_max_patches")}


def fod(args, name: str, train, calibration, test, device, phases: Phases) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = FOD(backbone(), **(fod_plus_memory() if name == "fod_plus" else {})).to(device)
    maps = phases.run(name, "features", lambda: [torch.cat(m) for m in zip(*(
        [f.cpu() for f in net.pooled_features(b)] for b in batches(train, device)))])  # fmt: skip
    net.reference.set([m.double().mean(0) for m in maps])
    if net.memory is not None:
        phases.run(name, "memory", lambda: net.memory.set(maps))
        banks = net.memory.banks
        phases.rows[-1] |= {"bank_mib": sum(b.numel() * b.element_size() for b in banks) / MIB,
                            "note": "bank " + " + ".join(f"{b.shape[0]} x {b.shape[1]}" for b in banks)}  # fmt: skip
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-4)

    def steps():
        for i in range(args.steps):
            stage_maps = [m[i % len(train) : i % len(train) + 1].to(device) for m in maps]
            total = sum(sum(phase_objectives(stage_losses(o.reconstruction, o.tokens, o.intra, o.inter), 0.5, 0.5))
                        for o in net.forward_features(stage_maps))  # fmt: skip
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()

    net.train()
    phases.run(name, "fit", steps)
    per_step = phases.rows[-1]["seconds"] / args.steps
    phases.rows[-1] |= {"note": f"{args.steps} steps, {per_step:.2f} s each; epoch of {len(train)}: "
                                f"{per_step * len(train):.0f} s", "epoch_seconds": per_step * len(train)}  # fmt: skip
    return score(net.eval(), name, calibration, test, device, phases)


def score(net, name, calibration, test, device, phases: Phases) -> tuple[torch.Tensor, torch.Tensor]:
    def run_all(images):
        with torch.no_grad():
            out = [net.score_images(b) for b in batches(images, device)]
        return torch.cat([o[0].cpu() for o in out]), torch.cat([o[1].float().cpu() for o in out])

    phases.run(name, "calibration", lambda: run_all(calibration), note=f"{len(calibration)} images")
    scores, maps = phases.run(name, "test scoring", lambda: run_all(test), note=f"{len(test)} images")
    phases.rows[-1]["seconds_per_image"] = phases.rows[-1]["seconds"] / len(test)
    return scores, maps


def baseline(args, name, train, calibration, test, device, phases: Phases):
    torch.manual_seed(0)
    net = (PatchCore(backbone(), seed=0) if name == "patchcore" else PaDiM(backbone(PADIM_STRIDES))).to(device).eval()
    with torch.no_grad():
        embeddings = phases.run(name, "features", lambda: [net.embed(b).cpu() for b in batches(train, device)])
        if name == "patchcore":
            flat = torch.cat([e.permute(0, 2, 3, 1).reshape(-1, e.shape[1]) for e in embeddings])
            phases.run(name, "coreset", lambda: net.fit(flat.to(device)),
                       note=f"{len(flat)} patches of {flat.shape[1]} -> {int(len(flat) * 0.1)}")  # fmt: skip
        else:
            phases.run(name, "fit", lambda: net.fit(torch.cat(embeddings).to(device)))
    return score(net, name, calibration, test, device, phases)


def anomalib_coreset(args, train, device, phases: Phases) -> None:
    """anomalib 2.7's KCenterGreedy on the same patches, its first selections timed and extrapolated."""
    from anomalib.models.components.sampling.k_center_greedy import KCenterGreedy

    torch.manual_seed(0)
    net = PatchCore(backbone(), seed=0).to(device).eval()
    with torch.no_grad():
        flat = torch.cat([e.permute(0, 2, 3, 1).reshape(-1, e.shape[1]).cpu() for e in
                          (net.embed(b) for b in batches(train, device))])  # fmt: skip
    k = int(len(flat) * 0.1)
    sampler = KCenterGreedy(flat.to(device), sampling_ratio=args.anomalib_selections / len(flat))
    phases.run(
        "anomalib patchcore",
        "coreset",
        sampler.select_coreset_idxs,
        note=f"first {args.anomalib_selections} of {k} selections",
    )
    per = phases.rows[-1]["seconds"] / args.anomalib_selections
    phases.rows[-1] |= {"extrapolated_seconds": per * k, "note": phases.rows[-1]["note"] + f": {per * k:.0f} s for all"}


def anomalib_padim(args, train, test, device, phases: Phases) -> None:
    """anomalib 2.7's PaDiM on the same backbone weights, levels and channel subset as ours (equal scores: tests/unit/
    models/test_baselines_parity.py): its embedding of the training images, its Gaussians, its test scoring."""
    from anomalib.models.image.padim.torch_model import PadimModel

    torch.manual_seed(0)
    ours = PaDiM(backbone(PADIM_STRIDES))
    theirs = PadimModel(backbone="tf_efficientnet_lite0", layers=[1, 2, 3], pre_trained=False,
                        n_features=len(ours.channels))  # fmt: skip
    theirs.feature_extractor.feature_extractor.load_state_dict(ours.backbone.model.state_dict())
    theirs.idx = ours.channels.clone()
    theirs = theirs.to(device)

    def embed():
        theirs.train()
        with torch.no_grad():
            for b in batches(train, device):
                theirs(b)

    phases.run("anomalib padim", "features", embed)
    phases.run("anomalib padim", "fit", theirs.fit)

    def scoring():
        theirs.eval()
        with torch.no_grad():
            return [theirs(b) for b in batches(test, device)]

    phases.run("anomalib padim", "test scoring", scoring, note=f"{len(test)} images")
    phases.rows[-1]["seconds_per_image"] = phases.rows[-1]["seconds"] / len(test)


def metrics(args, name, scores, maps, labels, masks, phases: Phases, exact_original: bool) -> None:
    """Every metric of the test split at the input size (exact), then at ``--original`` px (the maps drawn back to
    full-resolution masks, one image at a time): binned on 10,000 thresholds (constant memory, what a category beyond
    the exact memory budget gets), and exact too when ``exact_original`` (its time and peak, and the binned error)."""

    def exact():
        metric = AnomalyMetrics()
        metric.update(scores, labels, maps, masks)
        return metric.compute()

    phases.run(name, "metrics", exact, note=f"exact, {maps.shape[1]}x{maps.shape[2]} px")
    side = args.original

    def original(bins: int | None):
        up = torch.nn.functional.interpolate
        metric = AnomalyMetrics(True, bins, (float(maps.min()), float(maps.max())))
        for i in range(len(maps)):
            amap = up(maps[i][None, None], size=(side, side), mode="bilinear")[0]
            mask = up(masks[i][None, None].float(), size=(side, side), mode="nearest")[0].byte()
            metric.update(scores[i : i + 1], labels[i : i + 1], amap, mask)
        return metric.compute()

    pixels = f"{len(maps)} maps of {side}x{side} px, {len(maps) * side * side / 1e6:.0f} M pixels"
    binned = phases.run(name, "metrics", lambda: original(10_000), note=f"binned (10,000), {pixels}")
    if exact_original:
        values = phases.run(name, "metrics", lambda: original(None), note=f"exact, {pixels}")
        error = max(abs(float(binned[k]) - float(values[k])) for k in ("pixel_auroc", "pixel_aupro", "pixel_ap"))
        phases.rows[-1] |= {"binned_error": error, "note": phases.rows[-1]["note"] + f"; binned within {error:.1e}"}


def main(argv=None) -> dict:
    args = parse(argv)
    device = torch.device(args.device)
    train, test, labels, masks = category_images(args)
    n_cal = max(1, len(train) // 10)
    calibration, train = train[:n_cal], train[n_cal:]
    print(f"scale bench: {len(train)} training, {n_cal} calibration, {len(test)} test images of {args.size} px "
          f"on {device}", flush=True)  # fmt: skip
    phases = Phases(device)
    for name in args.models.split(","):
        if name in ("fod", "fod_plus"):
            scores, maps = fod(args, name, train, calibration, test, device, phases)
        else:
            scores, maps = baseline(args, name, train, calibration, test, device, phases)
        metrics(args, name, scores, maps, labels, masks, phases, exact_original=name == args.models.split(",")[0])
    if args.anomalib:
        anomalib_coreset(args, train, device, phases)
        anomalib_padim(args, train, test, device, phases)
    record = {"date": datetime.date.today().isoformat(), "args": vars(args), "rows": phases.rows}
    write_record(record, args.out)
    return record


if __name__ == "__main__":
    main()
