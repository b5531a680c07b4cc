"""Timing and peak-memory measurement for the benchmark (CPU RSS or the CUDA allocator's peak)."""

import ctypes
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def set_mmap_threshold(size: int) -> None:
    """glibc's M_MMAP_THRESHOLD: allocations of ``size`` bytes or more use mmap and go back to the OS when
    freed. Small while measuring RSS (a peak is not hidden by memory kept from before; allocations get
    slower), large while timing. Also returns free heap memory to the OS. A no-op without glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, size)
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def current_rss() -> int:
    """Resident set size of this process in bytes (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except OSError:
        return 0


class PeakMemory:
    """Peak memory while the block runs: the CUDA allocator's peak on a GPU, else the process RSS
    sampled every millisecond by a thread (torch releases the GIL inside its kernels). ``mmap_threshold``: glibc's
    while the block runs (64 KiB: freed memory leaves the process at once, the peak is the block's own, and every
    allocation is slower; 32 MiB: the allocator as while timing, freed heap memory kept and counted)."""

    def __init__(self, device: torch.device, mmap_threshold: int = 64 * 1024) -> None:
        self.device, self.mmap_threshold = device, mmap_threshold
        self.peak = self.start = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, current_rss())
            time.sleep(0.001)

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
        else:
            set_mmap_threshold(self.mmap_threshold)
            self.start = self.peak = current_rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, current_rss())
            set_mmap_threshold(32 * 1024 * 1024)

    @property
    def added(self) -> int:
        """Peak minus what was held when the block started (model, data, framework)."""
        return self.peak - self.start


def seconds_per_call(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Mean wall time of ``fn`` over ``repeats`` calls (after the caller's warm-up), synchronised on GPUs."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / repeats


def write_record(record: dict, out: str | None) -> None:
    """A bench's JSON record to ``out`` (its folder made; nothing without ``out``), named on the terminal."""
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(record, indent=1, default=float))
        print(f"record: {out}")
