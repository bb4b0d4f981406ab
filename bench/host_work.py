"""Host work of one sync: everything but the element math, on many tiny params.

With one-element params the kernel's own work is a few microseconds, so the time of a sync is the
host work around it: building the tensor lists, checking the op contract, finding the kernel's
plan, launching. Measured warm (the call before left every object in the caches) and cold (a
256 MiB write between calls evicts them, as the inner step of a large model does).

Variants, in interleaved rounds (timing.py):
  sync_lookahead      Lookahead(SGD).sync_lookahead(): the check and the sync of every pair.
  step k=1            Lookahead(SGD, k=1).step(): the check before the inner step, then the sync.
  SGD step            the inner SGD step alone (lr=0), so `step k=1 - SGD step` is the sync's share.
  step k=1, its sync  the same share paired within each call: step k=1's time minus that of the
                      inner step it ran (timed inside it), free of the noise between two calls.
Each plain and with outer momentum (mu = 0.9, three tensors per param). With the C++ extension,
two parts of the plain sync on the same lists, what any one sync call through it costs:
  _C.sync_ alone           the op's eager entry: its check, plan lookup, kernel, version bumps.
  _C.check_sync_lists alone  the check alone.

With --numel N (say 4096) the params are N elements each and the sync moves real bytes: then
sync_lookahead runs beside the two bandwidth timings of timing.py, and its time is also given in %
of the memory limit (16 bytes per fp32 element, 24 with outer momentum, per round).

    python bench/host_work.py [--pairs 2000] [--numel 1] [--rounds 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from lookahead_fused import Lookahead
from timing import per_round, rounds_with_bandwidth, summary

EVICT_BYTES = 256 * 2**20


def optimizer_pair(pairs: int, k: int, mu: float, backend: str, numel: int = 1) -> tuple[torch.optim.SGD, Lookahead]:
    params = [torch.nn.Parameter(torch.randn(numel)) for _ in range(pairs)]
    for p in params:
        p.grad = torch.zeros_like(p)
    inner = torch.optim.SGD(params, lr=0.0, foreach=True)
    return inner, Lookahead(inner, k=k, alpha=0.5, outer_momentum=mu, backend=backend)


class TimedInnerStep:
    """Stands in for an inner optimizer's step and keeps the seconds of each call."""

    def __init__(self, step):
        self.step = step
        self.seconds: list[float] = []

    def __call__(self, closure=None):
        start = time.perf_counter()
        loss = self.step(closure)
        self.seconds.append(time.perf_counter() - start)
        return loss


def variants(pairs: int, backend: str) -> tuple[dict, dict]:
    """The timed calls, and for each step variant its inner step's timer."""
    found, inner_timers = {}, {}
    for label, mu in (("", 0.0), (" mu=0.9", 0.9)):
        _, every_k = optimizer_pair(pairs, k=5, mu=mu, backend=backend)
        inner, every_step = optimizer_pair(pairs, k=1, mu=mu, backend=backend)
        found[f"sync_lookahead{label}"] = every_k.sync_lookahead
        found[f"step k=1{label}"] = every_step.step
        found[f"SGD step{label}"] = inner.step
        inner_timers[f"step k=1{label}"] = inner.step = TimedInnerStep(inner.step)
    if backend == "cpu":
        from lookahead_fused import _C

        fast = [torch.randn(1) for _ in range(pairs)]
        slow = [f.clone() for f in fast]
        found["_C.sync_ alone"] = lambda: _C.sync_(fast, slow, 0.5)
        if hasattr(_C, "check_sync_lists"):  # not in builds before issue 25
            found["_C.check_sync_lists alone"] = lambda: _C.check_sync_lists(fast, slow)
    return found, inner_timers


def rounds(found: dict, count: int, cold: bool) -> dict[str, list[float]]:
    """Seconds of each variant per round, rotating the order; `cold` evicts the caches before each call."""
    evict = torch.zeros(EVICT_BYTES // 4)
    names = list(found)
    for fn in found.values():
        fn()
    samples = {name: [] for name in names}
    for r in range(count):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            if cold:
                evict.add_(1.0)
            start = time.perf_counter()
            found[name]()
            samples[name].append(time.perf_counter() - start)
    return samples


def report(pairs: int, count: int, backend: str) -> dict:
    found, inner_timers = variants(pairs, backend)
    results = {"pairs": pairs, "backend": backend, "torch_threads": torch.get_num_threads()}
    for temperature in ("warm", "cold"):
        samples = rounds(found, count, cold=temperature == "cold")
        figures = {name: summary(values, 1e6, "us") for name, values in samples.items()}
        for label in ("", " mu=0.9"):
            step_name = f"step k=1{label}"
            sync_share = per_round(lambda a, b: a - b, samples[step_name], samples[f"SGD step{label}"])
            figures[f"step k=1 - SGD step{label}"] = summary(sync_share, 1e6, "us")
            inner_seconds = inner_timers[step_name].seconds[-count:]
            paired = per_round(lambda a, b: a - b, samples[step_name], inner_seconds)
            figures[f"step k=1, its sync{label}"] = summary(paired, 1e6, "us")
        results[temperature] = figures
    return results


def limit_report(pairs: int, numel: int, count: int, backend: str) -> dict:
    """sync_lookahead on `pairs` fp32 params of `numel` elements, in % of the memory limit per round."""
    found = {}
    for label, mu, bytes_per_element in (("", 0.0, 16), (" mu=0.9", 0.9, 24)):
        _, opt = optimizer_pair(pairs, k=5, mu=mu, backend=backend, numel=numel)
        found[f"sync_lookahead{label}"] = (opt.sync_lookahead, pairs * numel * bytes_per_element)
    samples, bandwidth = rounds_with_bandwidth({name: fn for name, (fn, _) in found.items()}, torch.device("cpu"),
                                               count, 0.0, count, count)  # fmt: skip
    results = {"pairs": pairs, "numel": numel, "backend": backend, "memory_bandwidth": summary(bandwidth, 1e-9, "GBps")}
    for name, (_, nbytes) in found.items():
        results[name] = {
            "time": summary(samples[name], 1e3, "ms"),
            "pct_of_limit": summary(per_round(lambda b, t, n=nbytes: 100 * n / b / t, bandwidth, samples[name])),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--numel", type=int, default=1, help="elements per param (above 1: %% of the memory limit)")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    if args.numel > 1:
        results = limit_report(args.pairs, args.numel, args.rounds, args.backend)
        for name in ("sync_lookahead", "sync_lookahead mu=0.9"):
            time, pct = results[name]["time"], results[name]["pct_of_limit"]
            print(f"{name:24s} {time['median_ms']:.2f} ms [{time['p10_ms']:.2f}-{time['p90_ms']:.2f}], "
                  f"{pct['median']:.0f} [{pct['p10']:.0f}-{pct['p90']:.0f}] % of the limit")  # fmt: skip
    else:
        results = report(args.pairs, args.rounds, args.backend)
        for temperature in ("warm", "cold"):
            print(f"{temperature} ({args.pairs} pairs, {args.rounds} rounds, backend {args.backend}): "
                  "median [p10-p90] us")  # fmt: skip
            for name, figure in results[temperature].items():
                print(f"  {name:28s} {figure['median_us']:8.1f} [{figure['p10_us']:.1f}-{figure['p90_us']:.1f}]")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1)


if __name__ == "__main__":
    main()
