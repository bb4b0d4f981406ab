"""How the benchmarks time things: medians over repetitions (CUDA events on a GPU), the memory
bandwidth the floor is measured against, and kernel launches counted with the profiler."""

from __future__ import annotations

import statistics
import time

import torch


def median_seconds(fn, device: torch.device, reps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        times = []
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        return statistics.median(times)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def paired_median_seconds(fn_a, fn_b, device: torch.device, reps: int) -> tuple[float, float]:
    """Medians of fn_a and fn_b timed in alternation, so that drift in the machine hits both alike."""
    a, b = [], []
    for _ in range(reps):
        a.append(median_seconds(fn_a, device, 1, warmup=0 if a else 2))
        b.append(median_seconds(fn_b, device, 1, warmup=0 if b else 2))
    return statistics.median(a), statistics.median(b)


def copy_bandwidth(device: torch.device, reps: int, nbytes: int = 512 * 2**20) -> float:
    """Bytes per second (read plus write) of the faster of a large copy_ and a large in-place update.

    On a CPU a copy_ also reads every destination line before writing it (write-allocate), which an
    in-place update such as the sync does not pay, so copy_ alone would understate the floor there.
    """
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    copy = median_seconds(lambda: dst.copy_(src), device, reps)
    in_place = median_seconds(lambda: dst.mul_(1.0), device, reps)
    return 2 * nbytes / min(copy, in_place)


def cache_bytes(device: torch.device) -> int:
    """The last-level cache a small parameter set could hide in (GPU L2; 64 MiB assumed on a CPU)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).L2_cache_size
    return 64 * 2**20


def kernel_launches(fn, device: torch.device) -> int | None:
    """GPU kernels one call of fn launches (None on a CPU, where there are no launches to count)."""
    if device.type != "cuda":
        return None
    fn()
    torch.cuda.synchronize(device)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize(device)
    return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA and "Memcpy" not in e.name)
