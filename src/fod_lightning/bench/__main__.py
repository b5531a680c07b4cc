"""python -m fod_lightning.bench: training and scoring time per image and peak memory, measured side by side
in one process on the same images and weights, for (a) the authors' structure (``baseline``) and
(b) fod_lightning at batch 1 and at larger batches. Prints ratios and writes a JSON record.

    python -m fod_lightning.bench --device cpu --out experiments/perf/cpu.json
    python -m fod_lightning.bench --device cuda --train-batches 8,16,32,64 --compile --bf16 --out gpu.json
"""

import argparse
import copy
import datetime
import gc
import itertools
import platform
import statistics
from pathlib import Path

import torch

from fod_lightning.bench import baseline
from fod_lightning.bench.measure import PeakMemory, seconds_per_call, set_mmap_threshold, write_record
from fod_lightning.data.textures import TEXTURE_CATEGORIES, TexturesDataModule
from fod_lightning.models.backbone import FeatureExtractor
from fod_lightning.models.fod.losses import phase_objectives, stage_losses
from fod_lightning.models.fod.model import FOD
from fod_lightning.training.fod.feature_cache import compute_maps

GIB = 1024**3


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fod_lightning.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--widths", default="256,512", help="transformer width per stage")
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--data-root", default="data/fod_textures", help="embedded benchmark (built if missing)")
    p.add_argument("--train-batches", default="1,2,4", help="fod_lightning training batch sizes to try")
    p.add_argument("--eval-batch", type=int, default=8, help="fod_lightning scoring batch size")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per variant (after the warm-up)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls first (compilation, allocator)")
    p.add_argument("--baseline-repeats", type=int, default=None, help="timed baseline calls (default: --repeats)")
    p.add_argument("--compile", action="store_true", help="also time compile_correlation=true at the largest batch")
    p.add_argument("--bf16", action="store_true", help="also time bf16 autocast (projections) at the largest batch")
    p.add_argument(
        "--recompute-logs",
        action="store_true",
        help="also time model.net.keep_logs_mib=0 (the backward pass recomputes the logarithms)",
    )
    p.add_argument("--skip-baseline", action="store_true", help="measure fod_lightning only (no ratios)")
    p.add_argument("--out", default=None, help="JSON record to write")
    p.add_argument("--profile", default=None, help="write a torch.profiler table of the last training variant here")
    return p.parse_args(argv)


def load_images(root: str, size: int) -> torch.Tensor:
    """All training images of the embedded benchmark's categories, (N, 3, S, S) normalised."""
    images = []
    for category in TEXTURE_CATEGORIES:
        dm = TexturesDataModule(root=root, category=category, image_size=size)
        dataset = dm.split("reference")
        images += [dataset[i]["image"] for i in range(len(dataset))]
    return torch.stack(images)


def build_net(args, device: torch.device) -> FOD:
    torch.manual_seed(0)
    backbone = FeatureExtractor("tf_efficientnet_lite0", weights="efficientnet_lite0_package")
    widths = tuple(int(w) for w in args.widths.split(","))
    return FOD(backbone, widths, args.heads, args.depth).to(device)


def prepared(args, device: torch.device) -> tuple[torch.Tensor, FOD, list[torch.Tensor]]:
    """The bench's images, its model and the images' pooled backbone maps, the model's reference set from them (as a
    fit sets it: their positional mean)."""
    images = load_images(args.data_root, args.image_size)
    net = build_net(args, device)
    with torch.no_grad():
        features = compute_maps((images[i : i + 16].to(device) for i in range(0, len(images), 16)), net.pooled_features)
    net.reference.set([f.double().mean(0) for f in features])
    return images, net, features


def trainable(net: FOD) -> list[torch.nn.Parameter]:
    return [p for p in net.parameters() if p.requires_grad]


class Batches:
    """Cycles over the images (or cached features) in batches of ``size``."""

    def __init__(self, n: int, size: int) -> None:
        self.index = itertools.cycle(range(0, n - size + 1, size))
        self.size = size

    def next(self) -> slice:
        start = next(self.index)
        return slice(start, start + self.size)


def ours_step(net: FOD, optimizer, features: list[torch.Tensor], rows: slice, device, bf16: bool = False) -> None:
    """fod_lightning's training step: cached features, fused correlation, one backward, one step."""
    maps = [f[rows].to(device, non_blocking=True) for f in features]
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        total = 0
        for out in net.forward_features(maps):
            total = total + sum(phase_objectives(stage_losses(out.reconstruction, out.tokens, out.intra, out.inter),
                                                 0.5, 0.5))  # fmt: skip
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()


class Variant:
    """One measured configuration: ``make()`` builds it (a fresh copy of the model and its optimizer) and returns its
    ``step``, which processes one batch of ``batch`` images."""

    def __init__(self, name: str, batch: int, make, repeats: int) -> None:
        self.name, self.batch, self.make, self.repeats = name, batch, make, repeats
        self.row = {"variant": name, "batch": batch}
        self.step = None

    def build(self, warmup: int) -> None:
        self.step = self.make()
        for _ in range(warmup):
            self.step()

    def release(self) -> None:
        self.step = None
        gc.collect()

    def memory(self, device, warmup: int) -> None:
        """Peak memory over two calls of the variant built alone (after its warm-up), then released."""
        self.build(max(1, warmup))
        with PeakMemory(device) as mem:
            self.step()
            self.step()
        self.release()
        self.row |= {"peak_memory_gib": mem.peak / GIB, "added_memory_gib": mem.added / GIB,
                     "added_memory_gib_per_image": mem.added / GIB / self.batch}  # fmt: skip
        print(f"  {self.name:<40} batch {self.batch:>3}  peak {mem.peak / GIB:6.2f} GiB "
              f"(+{mem.added / GIB:.2f}, {mem.added / GIB / self.batch:.3f} per image)", flush=True)  # fmt: skip


def time_interleaved(variants: list[Variant], device: torch.device, warmup: int) -> None:
    """Each variant's time per image, the median of its calls, with the calls of all variants interleaved round by
    round (a variant with fewer repeats spread evenly over the rounds): a machine whose speed drifts, as a shared
    one's does, slows them alike, so their ratios hold. One allocator setting for all (glibc's mmap threshold at
    32 MiB), whatever ran before."""
    set_mmap_threshold(32 * 1024 * 1024)
    for variant in variants:
        variant.build(warmup)
    rounds = max(v.repeats for v in variants)
    when = {id(v): {round(i * rounds / v.repeats) for i in range(v.repeats)} for v in variants}
    samples: dict[int, list[float]] = {id(v): [] for v in variants}
    for r in range(rounds):
        for variant in variants:
            if r in when[id(variant)]:
                samples[id(variant)].append(seconds_per_call(variant.step, device, 1))
    for variant in variants:
        seconds = statistics.median(samples[id(variant)]) / variant.batch
        variant.row |= {"seconds_per_image": seconds, "calls": len(samples[id(variant)])}
        print(f"  {variant.name:<40} batch {variant.batch:>3}  {1000 * seconds:10.2f} ms/image "
              f"(median of {len(samples[id(variant)])} interleaved calls)", flush=True)  # fmt: skip


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def loss_parity(net: FOD, image: torch.Tensor) -> float:
    """Relative difference of the two implementations' total loss on the same image and weights."""
    probe = copy.deepcopy(net)
    ours = 0.0
    for out in probe(image):
        ours += float(sum(phase_objectives(stage_losses(out.reconstruction, out.tokens, out.intra, out.inter),
                                           0.5, 0.5)))  # fmt: skip
    theirs = sum(baseline.train_step(probe, torch.optim.SGD(trainable(probe), lr=0.0), image))
    return abs(ours - theirs) / abs(theirs)


def training_variant(name, net, features, size, device, repeats, compiled=False, bf16=False,
                     keep_logs_mib: float | None = None) -> Variant:  # fmt: skip
    def make():
        ours = copy.deepcopy(net) if not compiled else clone_compiled(net)
        for module in ours.modules() if keep_logs_mib is not None else ():
            if hasattr(module, "keep_bytes"):
                module.keep_bytes = int(keep_logs_mib * 2**20)
        opt, batches = torch.optim.Adam(trainable(ours), lr=1e-4), Batches(len(features[0]), size)
        return lambda: ours_step(ours, opt, features, batches.next(), device, bf16)

    return Variant(name, size, make, repeats)


def baseline_variant(net, images, device, repeats) -> Variant:
    def make():
        base, batches = copy.deepcopy(net), Batches(len(images), 1)
        optimizer = torch.optim.Adam(trainable(base), lr=1e-4)
        return lambda: baseline.train_step(base, optimizer, images[batches.next()].to(device))

    return Variant("baseline (authors' structure)", 1, make, repeats)


def scoring_variant(name, net, images, size, device, repeats, compiled=False, bf16=False) -> Variant:
    def make():
        ours = (copy.deepcopy(net) if not compiled else clone_compiled(net)).eval()
        batches = Batches(len(images), size)

        def step():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                return ours.predict(images[batches.next()].to(device, non_blocking=True))

        return step

    return Variant(name, size, make, repeats)


def baseline_scoring_variant(net, images, device, repeats) -> Variant:
    def make():
        batches = Batches(len(images), 1)
        return lambda: baseline.score(net, images[batches.next()].to(device))

    return Variant("baseline scoring (authors' test)", 1, make, repeats)


def clone_compiled(net: FOD) -> FOD:
    """A copy of ``net`` whose fused correlation runs the torch.compile'd kernels."""
    ours = copy.deepcopy(net)
    for module in ours.modules():
        if hasattr(module, "compiled"):
            module.compiled = True
    return ours


def write_profile(variant: Variant, device: torch.device, path: Path) -> None:
    """Kernel time table of three steps of ``variant`` (where the time goes, for the next optimisation)."""
    from torch.profiler import ProfilerActivity, profile

    variant.build(1)

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(3):
            variant.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    path.parent.mkdir(parents=True, exist_ok=True)
    table = prof.key_averages().table(sort_by=sort, row_limit=30)
    path.write_text(f"{variant.name}, batch {variant.batch}, 3 steps\n{table}")
    variant.release()
    print(f"  profile of {variant.name}: {path}", flush=True)


def main(argv=None) -> dict:
    import sys

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["scale"]:  # python -m fod_lightning.bench scale: the costs of a real benchmark's category
        from fod_lightning.bench.scale import main as scale

        return scale(argv[1:])
    if argv[:1] == ["floor"]:  # python -m fod_lightning.bench floor: the step against its arithmetic floor
        from fod_lightning.bench.floor import main as floor

        return floor(argv[1:])
    if argv[:1] == ["job"]:  # python -m fod_lightning.bench job: the default job against the authors' steps
        from fod_lightning.bench.job import main as job

        return job(argv[1:])
    args = parse(argv)
    device = torch.device(args.device)
    images, net, features = prepared(args, device)
    if device.type == "cuda":
        images, features = images.pin_memory(), [f.pin_memory() for f in features]
    print(f"fod_lightning bench on {machine(device)}: {len(images)} images of {args.image_size} px, "
          f"widths {args.widths}, {args.heads} heads, {args.depth} layers", flush=True)  # fmt: skip
    record = {"date": datetime.date.today().isoformat(), "machine": machine(device), "args": vars(args)}
    base_repeats = args.baseline_repeats or args.repeats
    rows: list[dict] = []

    def measure(group: list[Variant], profile: Path | None = None) -> list[dict]:
        """Time the group's variants interleaved, profile the last one, then each one's peak memory built alone."""
        time_interleaved(group, device, args.warmup)
        for variant in group:
            variant.release()
        if profile:
            write_profile(group[-1], device, profile)
        for variant in group:
            variant.memory(device, args.warmup)
            rows.append(variant.row)
        return [variant.row for variant in group]

    print("training", flush=True)
    group = []
    if not args.skip_baseline:
        record["loss_relative_difference"] = loss_parity(net, images[:1].to(device))
        print(f"  same weights, same image: total loss differs by {record['loss_relative_difference']:.1e} (relative)")
        group.append(baseline_variant(net, images, device, base_repeats))
    batches = [int(b) for b in args.train_batches.split(",")]
    group += [training_variant("fod_lightning", net, features, b, device, args.repeats) for b in batches]
    if args.recompute_logs:  # the default's kept logarithms against recomputing them, at the largest batch
        group.append(training_variant("fod_lightning, logarithms recomputed", net, features, batches[-1], device,
                                      args.repeats, keep_logs_mib=0))  # fmt: skip
    extras = [("+ bf16 autocast", False, True)] if args.bf16 else []
    extras += [("+ torch.compile", True, False)] if args.compile else []
    extras += [("+ torch.compile + bf16 autocast", True, True)] if args.compile and args.bf16 else []
    # the options at the largest batch, in the same interleaved rounds as the baseline
    group += [training_variant(f"fod_lightning {suffix}", net, features, batches[-1], device, args.repeats, compiled,
                               bf16) for suffix, compiled, bf16 in extras]  # fmt: skip
    measure(group, Path(args.profile) if args.profile else None)

    print("scoring", flush=True)
    net.eval()
    group = [baseline_scoring_variant(net, images, device, base_repeats)] if not args.skip_baseline else []
    group += [
        scoring_variant(
            f"fod_lightning scoring {suffix}".strip(),
            net,
            images,
            args.eval_batch,
            device,
            args.repeats,
            compiled,
            bf16,
        )
        for suffix, compiled, bf16 in [("", False, False), *extras]
    ]
    measure(group)
    record["rows"] = rows
    record["ratios"] = ratios(record["rows"])
    for key, value in record["ratios"].items():
        print(f"  {key}: {value:.2f}")
    write_record(record, args.out)
    return record


def ratios(rows: list[dict]) -> dict[str, float]:
    """Speed-ups and memory fractions of every fod_lightning variant against the baseline."""
    out = {}
    base = next((r for r in rows if r["variant"] == "baseline (authors' structure)"), None)
    base_score = next((r for r in rows if r["variant"] == "baseline scoring (authors' test)"), None)
    for row in rows:
        name, batch = row["variant"], row["batch"]
        reference = base_score if "scoring" in name else base
        if name.startswith("fod_lightning") and reference:
            what = "scoring" if "scoring" in name else "training"
            label = f"{what} speed-up, {name} (batch {batch})"
            out[label] = reference["seconds_per_image"] / row["seconds_per_image"]
            if "peak_memory_gib" in row and "peak_memory_gib" in reference:
                out[f"{what} peak memory / baseline, {name} (batch {batch})"] = (
                    row["peak_memory_gib"] / reference["peak_memory_gib"]
                )
    return out


def cli() -> None:
    """``fod-bench``: :func:`main` returns the record (a dict), not an exit status."""
    main()


if __name__ == "__main__":
    main()
