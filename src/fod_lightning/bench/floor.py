"""Where a training step's time goes, against its arithmetic floor (``python -m fod_lightning.bench floor``).

The floor is the step's floating-point operations (counted by ``torch.utils.flop_counter`` on one step: every matrix
product of the forward and backward passes, the fused correlation's included) divided by the machine's own
matrix-product rate (a large float32 ``mm`` timed here, the best a step could reach). The step's time, measured with
``torch.profiler``, is split into matrix products, transcendental functions (exp, log, softmax, GELU) and the other
element-wise and memory operations, each against the share of the floor it holds.

    python -m fod_lightning.bench floor --out experiments/perf/floor_cpu.json
"""

import argparse
import datetime
import statistics

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from fod_lightning.bench.measure import seconds_per_call, write_record

MATMUL = ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::convolution", "aten::mkldnn_convolution",
          "aten::_scaled_dot_product_flash_attention_for_cpu",
          "aten::_scaled_dot_product_flash_attention_for_cpu_backward")  # fmt: skip
TRANSCENDENTAL = ("aten::log", "aten::log_", "aten::exp", "aten::exp_", "aten::_softmax", "aten::sigmoid", "aten::pow",
                  "aten::_softmax_backward_data", "aten::gelu", "aten::gelu_backward")  # fmt: skip


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fod_lightning.bench floor", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default="data/fod_textures", help="embedded benchmark (built if missing)")
    p.add_argument("--image-size", default="256")
    p.add_argument("--widths", default="256,512")
    p.add_argument("--steps", type=int, default=5, help="steps timed and profiled")
    p.add_argument("--compile", action="store_true", help="the compiled correlation kernels")
    p.add_argument("--out", default=None, help="JSON record to write")
    return p.parse_args(argv)


def matmul_rate(size: int = 2048, repeats: int = 5) -> float:
    """This machine's float32 matrix-product rate, FLOP per second (the best of ``repeats``)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = min(seconds_per_call(lambda: a @ b, torch.device("cpu"), 1) for _ in range(repeats))
    return 2 * size**3 / best


def kind(name: str) -> str:
    return "matrix products" if name in MATMUL else "transcendental" if name in TRANSCENDENTAL else "other"


def main(argv=None) -> dict:
    from fod_lightning.bench.__main__ import Batches, clone_compiled, ours_step, prepared, trainable
    from fod_lightning.bench.__main__ import parse as bench_args

    args = parse(argv)
    bench = bench_args(["--device", "cpu", "--data-root", args.data_root, "--image-size", args.image_size,
                        "--widths", args.widths])  # fmt: skip
    device = torch.device("cpu")
    images, net, features = prepared(bench, device)
    net = clone_compiled(net) if args.compile else net
    optimizer, batches = torch.optim.Adam(trainable(net), lr=1e-4), Batches(len(images), 1)

    def step() -> None:
        ours_step(net, optimizer, features, batches.next(), device)

    step()
    step()
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    seconds = statistics.median(seconds_per_call(step, device, 1) for _ in range(args.steps))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    spent: dict[str, float] = {}
    for event in prof.key_averages():
        spent[kind(event.key)] = spent.get(kind(event.key), 0.0) + event.self_cpu_time_total / 1e6 / args.steps
    profiled = sum(spent.values())
    rate = matmul_rate()
    record = {
        "date": datetime.date.today().isoformat(),
        "args": vars(args),
        "step_seconds": seconds,
        "gflop_per_step": flops / 1e9,
        "matmul_gflop_per_second": rate / 1e9,
        "floor_seconds": flops / rate,
        "step_over_floor": seconds / (flops / rate),
        # the profiled time of each kind, scaled to the step's unprofiled time (the profiler adds its own overhead)
        "seconds_by_kind": {k: v * seconds / profiled for k, v in sorted(spent.items())},
    }
    print(f"step {seconds:.3f} s; {flops / 1e9:.1f} GFLOP at this machine's {rate / 1e9:.0f} GFLOP/s (float32 mm): "
          f"floor {flops / rate:.3f} s, the step {seconds / (flops / rate):.2f}x the floor", flush=True)  # fmt: skip
    for name, value in record["seconds_by_kind"].items():
        print(f"  {name:<16} {value:.3f} s", flush=True)
    write_record(record, args.out)
    return record
