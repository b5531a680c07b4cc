"""``python -m fod_lightning.bench job``: the default job's wall time against the authors' training steps, in one run.

The authors' training step (:mod:`fod_lightning.bench.baseline`, 256 px, batch 1, on the embedded benchmark's images
and the default model's weights) is timed ``--authors-steps`` times, half before and half after the job, so that a
machine whose speed drifts weighs on both alike. The job is ``python -m fod_lightning.run`` with the defaults (and any
overrides given after ``--``), run as a child process into a fresh folder. The record: the authors' step (median),
the job's wall time, the job in authors' steps, its peak RSS, its metrics and, with ``--reference results.json``, the
largest difference of each metric from that run's.

    python -m fod_lightning.bench job --out experiments/perf/job_cpu.json --reference <earlier results.json>
"""

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from fod_lightning.bench import baseline
from fod_lightning.bench.measure import seconds_per_call, set_mmap_threshold, write_record
from fod_lightning.utils.resources import peak_rss_bytes

METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro", "image_f1_max", "pixel_f1_max")


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fod_lightning.bench job", description=__doc__.split("\n\n")[0])
    p.add_argument("--authors-steps", type=int, default=24, help="authors' training steps timed (half before the job)")
    p.add_argument("--data-root", default="data/fod_textures", help="embedded benchmark (built if missing)")
    p.add_argument("--image-size", default="256", help="of the authors' steps (the default job's input)")
    p.add_argument("--widths", default="256,512", help="of the authors' steps (the default model's)")
    p.add_argument("--reference", default=None, help="results.json of an earlier default job to compare metrics with")
    p.add_argument("--out", default=None, help="JSON record to write")
    p.add_argument("overrides", nargs="*", help="overrides of the job (after --)")
    return p.parse_args(argv)


def authors_steps(data_root: str, image_size: str, widths: str):
    """A callable timing n of the authors' training steps (seconds each), on the default model's weights."""
    from fod_lightning.bench.__main__ import Batches, prepared, trainable
    from fod_lightning.bench.__main__ import parse as bench_args

    args = bench_args(["--device", "cpu", "--data-root", data_root, "--image-size", image_size, "--widths", widths])
    device = torch.device("cpu")
    images, net, _ = prepared(args, device)
    optimizer, batches = torch.optim.Adam(trainable(net), lr=1e-4), Batches(len(images), 1)
    step = lambda: baseline.train_step(net, optimizer, images[batches.next()])  # noqa: E731

    def run(n: int) -> list[float]:
        return [seconds_per_call(step, device, 1) for _ in range(n)]

    run(1)  # warm-up
    return run


def run_job(overrides: list[str], folder: Path) -> tuple[float, int, dict]:
    """The default job as a user runs it, in a child process: its wall time, its peak RSS in bytes (the kernel's
    high-water mark of the child, read until it ends; 0 where /proc is missing) and its results.json."""
    command = [sys.executable, "-m", "fod_lightning.run", f"hydra.run.dir={folder}", *overrides]
    print("job:", " ".join(command), flush=True)
    start = time.perf_counter()
    child, peak = subprocess.Popen(command, stdout=subprocess.DEVNULL), 0
    while child.poll() is None:
        peak = max(peak, peak_rss_bytes(child.pid) or 0)
        time.sleep(0.2)
    seconds = time.perf_counter() - start
    if child.returncode:
        raise subprocess.CalledProcessError(child.returncode, command)
    return seconds, peak, json.loads((folder / "results.json").read_text())


def metric_differences(results: dict, reference: dict) -> dict[str, float]:
    """The largest absolute difference of each metric over the categories (and their mean)."""
    worst = {}
    for name in METRICS:
        pairs = [(m.get(name), reference["categories"].get(c, {}).get(name)) for c, m in results["categories"].items()]
        pairs.append((results["mean"].get(name), reference["mean"].get(name)))
        found = [abs(a - b) for a, b in pairs if a is not None and b is not None]
        if found:
            worst[name] = max(found)
    return worst


def main(argv=None) -> dict:
    args = parse(argv)
    set_mmap_threshold(32 * 1024 * 1024)
    steps = authors_steps(args.data_root, args.image_size, args.widths)
    before = steps(args.authors_steps // 2)
    with tempfile.TemporaryDirectory(prefix="fod_bench_job_") as tmp:
        job_seconds, job_peak, results = run_job(["trainer.enable_progress_bar=false", *args.overrides],
                                                 Path(tmp) / "run")  # fmt: skip
    after = steps(args.authors_steps - len(before))
    step = statistics.median(before + after)
    record = {
        "date": datetime.date.today().isoformat(),
        "overrides": args.overrides,
        "authors_step_seconds": step,
        "authors_steps_seconds": before + after,
        "job_seconds": job_seconds,
        "job_in_authors_steps": job_seconds / step,
        "job_peak_rss_mib": job_peak / 2**20,
        "metrics": {
            c: {k: m.get(k) for k in METRICS} for c, m in [*results["categories"].items(), ("mean", results["mean"])]
        },
    }
    if args.reference:
        record["largest_metric_difference"] = metric_differences(results, json.loads(Path(args.reference).read_text()))
    print(f"authors' step {step:.2f} s (median of {len(before + after)}); job {job_seconds:.1f} s = "
          f"{job_seconds / step:.1f} authors' steps; peak RSS {record['job_peak_rss_mib']:.0f} MiB",
          flush=True)  # fmt: skip
    if "largest_metric_difference" in record:
        print("largest metric difference from the reference:", record["largest_metric_difference"], flush=True)
    write_record(record, args.out)
    return record
