"""How the benchmarks time things.

Variants that are compared are timed in interleaved rounds: every round runs each variant once, in
an order that rotates from round to round, so that drift in a shared machine (another process, the
clock, the page cache) hits every variant alike. A ratio between two variants is computed per round
and then summarised, so it carries its own spread. Every figure is summarised by `summary`: median,
min, max, p10, p90 and the number of rounds. CUDA events time a GPU; perf_counter a CPU.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence

import torch

SPREAD_WARN_PCT = 10.0  # a figure whose p10-p90 range exceeds this % of its median is flagged
BANDWIDTH_BUFFER_BYTES = 512 * 2**20


def time_once(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of fn takes (on a GPU, between CUDA events on the current stream)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved_rounds(
    variants: dict[str, Callable[[], object]], device: torch.device, rounds: int, warmup: int = 2
) -> dict[str, list[float]]:
    """Seconds of each variant in each round; round r starts at variant r mod len(variants)."""
    names = list(variants)
    for name in names:
        for _ in range(warmup):
            variants[name]()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(time_once(variants[name], device))
    return samples


def rounds_for_budget(
    variants: dict[str, Callable[[], object]], device: torch.device, budget_s: float, least: int, most: int
) -> int:
    """How many rounds fit in budget_s, from one timed round after a warm-up call of each variant (a
    first call pays for plans, page faults and caches), but at least `least` and at most `most`."""
    for fn in variants.values():
        fn()
    one_round = sum(time_once(fn, device) for fn in variants.values())
    return max(least, min(most, math.floor(budget_s / max(one_round, 1e-9))))


def _percentile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median_ci95_rank(n: int) -> int:
    """j such that [ordered[j], ordered[n - 1 - j]] is a distribution-free 95 % confidence interval of
    the median of n independent samples: the largest j with P(Binomial(n, 1/2) <= j) <= 2.5 %, the
    chance that j + 1 or fewer samples fall below the true median (and as much for above). 0 (min
    to max) when n < 6, where even that interval covers less than 95 %."""
    j, at_most_j = 0, 1  # at_most_j: 2**n P(Binomial(n, 1/2) <= j)
    while 40 * (at_most_j + math.comb(n, j + 1)) <= 2**n:
        j += 1
        at_most_j += math.comb(n, j)
    return j


def summary(values: Sequence[float], scale: float = 1.0, unit: str = "") -> dict:
    """median, min, max, p10, p90 (times `scale`, keys suffixed `_unit`), reps, spread_pct: the
    p10-p90 range in % of the median, and median_ci95_low/high: where the median itself lies with
    95 % confidence, if the rounds are independent (interleaved rounds make a per-round ratio so,
    nearly: drift hits both of its timings)."""
    ordered = sorted(v * scale for v in values)
    suffix = f"_{unit}" if unit else ""
    median = statistics.median(ordered)
    p10, p90 = _percentile(ordered, 0.1), _percentile(ordered, 0.9)
    j = median_ci95_rank(len(ordered))
    return {
        f"median{suffix}": median,
        f"median_ci95_low{suffix}": ordered[j],
        f"median_ci95_high{suffix}": ordered[len(ordered) - 1 - j],
        f"min{suffix}": ordered[0],
        f"max{suffix}": ordered[-1],
        f"p10{suffix}": p10,
        f"p90{suffix}": p90,
        "reps": len(ordered),
        "spread_pct": 100 * (p90 - p10) / abs(median) if median else math.inf,
    }


def per_round(fn: Callable[..., float], *series: Sequence[float]) -> list[float]:
    """fn applied round by round to aligned series of samples (a ratio, a floor, ...)."""
    return [fn(*values) for values in zip(*series, strict=True)]


def bandwidth_variants(device: torch.device, nbytes: int = BANDWIDTH_BUFFER_BYTES) -> dict[str, Callable[[], object]]:
    """The two timings the memory bandwidth is taken from, as variants to put in every round: a large
    copy_ and a large in-place update, each reading and writing nbytes."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src).copy_(src)
    return {"bandwidth: copy_": lambda: dst.copy_(src), "bandwidth: in-place": lambda: dst.mul_(1.0)}


def rounds_with_bandwidth(
    variants: dict[str, Callable[[], object]], device: torch.device, rounds: int | None, budget_s: float, least: int,
    most: int,
) -> tuple[dict[str, list[float]], list[float]]:
    """The variants and the two bandwidth timings in interleaved rounds (`rounds` of them, or as many
    as fit in budget_s): the samples of every variant, and the bandwidth of each round."""
    variants = {**bandwidth_variants(device), **variants}
    rounds = rounds or rounds_for_budget(variants, device, budget_s, least, most)
    samples = interleaved_rounds(variants, device, rounds)
    return samples, bandwidth_per_round(samples)


def bandwidth_per_round(samples: dict[str, list[float]], nbytes: int = BANDWIDTH_BUFFER_BYTES) -> list[float]:
    """Bytes per second (read plus write) in each round: the faster of the copy_ and the in-place update.

    On a CPU a copy_ also reads every destination line before writing it (write-allocate), which an
    in-place update such as the sync does not pay, so copy_ alone would understate the limit there.
    """
    return per_round(lambda copy, in_place: 2 * nbytes / min(copy, in_place),
                     samples["bandwidth: copy_"], samples["bandwidth: in-place"])  # fmt: skip


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


def span(figure: dict, unit: str = "", digits: int = 2) -> str:
    """median [p10-p90] of a summary."""
    suffix = f"_{unit}" if unit else ""
    return f"{figure['median' + suffix]:.{digits}f} [{figure['p10' + suffix]:.{digits}f}-{figure['p90' + suffix]:.{digits}f}]"
