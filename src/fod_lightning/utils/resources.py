"""What a block of work cost: wall time and peak memory (the process's resident set on CPU, the CUDA allocator's
peak on a GPU), cheap enough to measure every category of every job."""

import time
from pathlib import Path

import torch

MIB = 2**20
CLEAR_REFS = Path("/proc/self/clear_refs")


def peak_rss_bytes(pid: int | str = "self") -> int | None:
    """A process's peak resident set (this one's by default) since it started or since :func:`reset_peak_rss` (Linux
    VmHWM); None where unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Start the peak resident set afresh (Linux: ``5`` into ``/proc/self/clear_refs``); False where unsupported."""
    try:
        CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


class Cost:
    """Seconds and peak memory of the block (``with Cost() as cost: ...``): ``seconds``, ``peak_rss_mib`` (None
    where the peak cannot be reset, so that it would not be this block's) and ``peak_cuda_mib`` (None without CUDA)."""

    def __enter__(self) -> "Cost":
        self.cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        self.resettable = reset_peak_rss()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.start
        peak = peak_rss_bytes() if self.resettable else None
        self.peak_rss_mib = round(peak / MIB, 1) if peak is not None else None
        self.peak_cuda_mib = round(torch.cuda.max_memory_allocated() / MIB, 1) if self.cuda else None
