"""Where the Triton sync's time goes, beside the CUDA kernel's: per call, the whole call (host work
and kernel, as bench_sync.py times it) and the kernels' own device time (the profiler's), on
GPT-2 small and 2000 x 4096 in float32; the Triton call with the contract checked in Python
(contract.check_sync_lists, as before the C++ twin took over) and in C++; and the Triton kernel's
device time over the grid's programs per SM
(see [NOTE: Triton grid] in lookahead_fused/backends/triton/sync.py). GPU only.

    python bench/triton_sync_time.py [--rounds 30] [--json PATH]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_shapes import MODELS  # noqa: E402
from timing import interleaved_rounds, summary  # noqa: E402

from lookahead_fused import contract, ops  # noqa: E402
from lookahead_fused.backends.triton import plans  # noqa: E402

CASES = ["gpt2-small", "2000x4096"]
GRID_PROGRAMS_PER_SM = [8, 32, 128]


def device_ms(fn) -> float:
    """The summed device time of the GPU kernels one call of fn runs, in ms."""
    fn()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA and "Memcpy" not in e.name]
    return sum(e.device_time for e in kernels) / 1e3


def python_checked_triton(fast, slow) -> None:
    """The Triton sync with the lists checked by contract.py, as every Triton call was before."""
    contract.check_sync_lists(fast, slow)
    ops.run_checked_sync_(fast, slow, 0.5, backend="triton")


def measure(model: str, rounds: int) -> dict:
    shapes = MODELS[model]()
    sets = []
    for _ in range(2):  # two copies, alternated, so that a small set does not sit in L2 between calls
        fast = [torch.randn(shape, device="cuda") for shape in shapes]
        sets.append((fast, [f + 0.01 for f in fast]))
    variants = {
        "cuda": lambda s: ops.lookahead_sync_(*s, 0.5, backend="cuda"),
        "triton, C++ check": lambda s: ops.lookahead_sync_(*s, 0.5, backend="triton"),
        "triton, Python check": lambda s: python_checked_triton(*s),
    }
    rotations = {name: itertools.cycle(sets) for name in variants}
    calls = {name: (lambda name=name: variants[name](next(rotations[name]))) for name in variants}
    samples = interleaved_rounds(calls, torch.device("cuda"), rounds)
    result = {"model": model, "tensors": len(shapes), "call": {}, "device": {}, "triton_grid": {}}
    for name in variants:
        result["call"][name] = summary(samples[name], 1e3, "ms")
        result["device"][name] = statistics.median(device_ms(calls[name]) for _ in range(5))
    default = plans.PROGRAMS_PER_SM
    try:
        for programs in GRID_PROGRAMS_PER_SM:
            plans.PROGRAMS_PER_SM = programs
            plans.max_programs.cache_clear()
            result["triton_grid"][programs] = statistics.median(device_ms(calls["triton, C++ check"]) for _ in range(5))
    finally:
        plans.PROGRAMS_PER_SM = default
        plans.max_programs.cache_clear()
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("triton_sync_time.py needs a CUDA GPU")
    results = [measure(model, args.rounds) for model in CASES]
    print(f"Triton sync time, {torch.cuda.get_device_name()}, float32, alpha 0.5; whole call median [p10-p90] "
          f"over {args.rounds} interleaved rounds, device time the profiler's median of 5 calls")  # fmt: skip
    for r in results:
        print(f"{r['model']} ({r['tensors']} tensors):")
        for name, figure in r["call"].items():
            print(f"  {name:<22} call {figure['median_ms']:8.3f} [{figure['p10_ms']:.3f}-{figure['p90_ms']:.3f}] ms"
                  f"   device {r['device'][name]:8.3f} ms")  # fmt: skip
        grid = ", ".join(f"{p} per SM {ms:.3f} ms" for p, ms in r["triton_grid"].items())
        print(f"  triton device time by programs per SM: {grid}")
    if args.json:
        args.json.write_text(json.dumps({"device": torch.cuda.get_device_name(), "cases": results}, indent=1))


if __name__ == "__main__":
    main()
