"""Time one Lookahead sync per backend on model-shaped parameter sets; compare with the memory limit.

    python bench/bench_sync.py                      # the default, about two minutes on a 2-core CPU
    python bench/bench_sync.py --models gpt2-small --dtypes bf16+fp32 --reps 50 --json out.json

Bytes a sync must move (docs/design.md, "Speed model"): numel * 2 * (fast bytes + slow bytes) per
pair. Every backend of a case, and the two bandwidth timings (a large copy_ and a large in-place
update), run in interleaved rounds (timing.py); each round gives a bandwidth, a floor (the case's
bytes at that bandwidth), and each backend's % of that limit and speed-ups over "reference" (the
per-tensor Python loop) and "foreach". Every figure is reported with its median, p10-p90 and
min-max over the rounds. Sets smaller than a few times the cache are rotated between copies so the
cache does not flatter them. Then the whole-step overhead of Lookahead over AdamW
(step_overhead.py), warnings for figures that are noisy or beat their floor, and a PNG figure.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import math
import os
import platform
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import outer_momentum  # noqa: E402
import adamw_step  # noqa: E402
import step_overhead  # noqa: E402
from model_shapes import MODELS  # noqa: E402
from timing import SPREAD_WARN_PCT, cache_bytes, kernel_launches, per_round, rounds_with_bandwidth, span, summary  # noqa: E402

from lookahead_fused import ops  # noqa: E402
from lookahead_fused.backends import backends_for_device  # noqa: E402

DTYPES = {  # name -> (fast dtype, slow dtype)
    "fp32": (torch.float32, torch.float32),
    "bf16": (torch.bfloat16, torch.bfloat16),
    "bf16+fp32": (torch.bfloat16, torch.float32),
}
MAX_COPIES = 8
SECONDS_PER_CASE = {"cpu": 8.0, "cuda": 4.0}
ROUNDS = {"cpu": (7, 200), "cuda": (20, 500)}  # the fewest and the most rounds a case's budget may give


def timed_backends(device_type: str) -> list[str]:
    """Every backend available for the device, less Triton on a CPU: that is its interpreter, for tests."""
    return [b for b in backends_for_device(device_type) if device_type == "cuda" or b != "triton"]


def sync_bytes(shapes, fast_dtype, slow_dtype) -> int:
    per_element = 2 * (torch.empty(0, dtype=fast_dtype).element_size() + torch.empty(0, dtype=slow_dtype).element_size())
    return sum(math.prod(shape) for shape in shapes) * per_element


def make_set(shapes, fast_dtype, slow_dtype, device):
    fast = [torch.randn(shape, device=device).to(fast_dtype) for shape in shapes]
    slow = [f.to(slow_dtype) + 0.01 for f in fast]
    return fast, slow


def run_case(model, dtype_name, device, backends, rounds, budget_s) -> dict:
    shapes = MODELS[model]()
    fast_dtype, slow_dtype = DTYPES[dtype_name]
    nbytes = sync_bytes(shapes, fast_dtype, slow_dtype)
    copies = max(1, min(MAX_COPIES, math.ceil(4 * cache_bytes(device) / (nbytes / 2))))
    sets = [make_set(shapes, fast_dtype, slow_dtype, device) for _ in range(copies)]
    variants = {}
    for name in backends:
        rotation = itertools.cycle(sets)

        def one_sync(name=name, rotation=rotation):
            fast, slow = next(rotation)
            ops.lookahead_sync_(fast, slow, 0.5, backend=name)

        variants[name] = one_sync
    samples, bandwidth = rounds_with_bandwidth(variants, device, rounds, budget_s, *ROUNDS[device.type])
    floor = per_round(lambda bytes_per_second: nbytes / bytes_per_second, bandwidth)
    case = {
        "model": model,
        "dtypes": dtype_name,
        "tensors": len(shapes),
        "params": sum(math.prod(s) for s in shapes),
        "bytes_per_sync": nbytes,
        "memory_bandwidth": summary(bandwidth, 1e-9, "GBps"),
        "floor": summary(floor, 1e3, "ms"),
        "rotated_copies": copies,
        "backends": {},
    }
    for name in backends:
        times = samples[name]
        result = {
            "time": summary(times, 1e3, "ms"),
            "GB/s": nbytes / statistics.median(times) / 1e9,
            "pct_of_bandwidth": summary(per_round(lambda f, t: 100 * f / t, floor, times)),
            "launches_per_sync": kernel_launches(variants[name], device),
        }
        for base in ("reference", "foreach"):
            if base in samples:
                result[f"x_vs_{base}"] = summary(per_round(lambda b, t: b / t, samples[base], times))
        case["backends"][name] = result
    return case


def median_interval(figure: dict, digits: int = 1) -> str:
    """The 95 % confidence interval of a summary's median (timing.median_ci95_rank)."""
    return f"{figure['median_ci95_low']:.{digits}f}-{figure['median_ci95_high']:.{digits}f}"


def print_table(cases, bandwidth, device_name):
    print(f"\nLookahead sync, {device_name}, memory bandwidth {span(bandwidth, 'GBps', 1)} GB/s (read+write; "
          "median [p10-p90] of the cases' own)")  # fmt: skip
    print("Each figure: median [p10-p90] over the rounds; 'rounds' is how many.")
    header = (
        f"{'model':<13}{'dtypes':<11}{'tensors':>8}{'params':>13}{'floor ms':>22}  {'backend':<10}"
        f"{'ms':>22}{'% of limit':>18}{'x reference':>20}{'x foreach':>20}{'rounds':>7}{'launches':>9}"
    )
    print(header)
    print("-" * len(header))
    for case in cases:
        for i, (name, r) in enumerate(case["backends"].items()):
            lead = (
                f"{case['model']:<13}{case['dtypes']:<11}{case['tensors']:>8}{case['params']:>13,}"
                f"{span(case['floor'], 'ms'):>22}"
                if i == 0
                else " " * 67
            )
            ratios = [span(r[key]) if key in r else "-" for key in ("x_vs_reference", "x_vs_foreach")]
            launches = "-" if r["launches_per_sync"] is None else str(r["launches_per_sync"])
            print(
                f"{lead}  {name:<10}{span(r['time'], 'ms'):>22}{span(r['pct_of_bandwidth'], digits=0):>18}"
                f"{ratios[0]:>20}{ratios[1]:>20}{r['time']['reps']:>7}{launches:>9}"
            )


def print_overhead(rows, model):
    print(f"\nWhole-step overhead of Lookahead (k={rows[0]['k']}) over AdamW alone, {model}, fp32, "
          f"median [p10-p90] over {rows[0]['overhead_pct']['reps']} rounds, and where the overhead's median lies "
          "with 95 % confidence:")  # fmt: skip
    for r in rows:
        print(
            f"  {r['inner']:<14} {r['lookahead']:<26} {r['k']} steps {span(r['k_steps'], 'ms'):>24} ms, "
            f"with Lookahead {span(r['k_steps_with_lookahead'], 'ms'):>24} ms: overhead {span(r['overhead_pct'], digits=1):>18} %"
            f" (median in {median_interval(r['overhead_pct'])}; floors: {r['floor_pct']:.1f} % by bytes, "
            f"{span(r['time_floor_pct'], digits=1)} % by time)"
        )


def print_adamw_step(r, model):
    steps = ", ".join(f"{name} {span(s, 'ms')} ms" for name, s in r["step_ms"].items())
    print(f"\nOne step each ({model}, fp32, {r['step_ms']['adamw']['reps']} rounds; bench/adamw_step.py): {steps}")
    print(f"Whole-step overhead at k={r['k']} over {r['adamw']}, composed per round from those steps:")
    for name, key in (("LookaheadAdamW", "lookahead_adamw"), ("Lookahead(AdamW)", "lookahead")):
        print(f"  {name:<17} {span(r[key + '_overhead_pct'], digits=1):>18} % (floors: {r[key + '_floor_pct']:.1f} % "
              f"by bytes, {span(r[key + '_time_floor_pct'], digits=1)} % by time)")  # fmt: skip


def warnings_for(cases, overhead) -> list[str]:
    """What a reader must not take at face value: a spread over SPREAD_WARN_PCT, or a figure that
    beats its physical floor (a measurement error: the machine changed speed between timings, or
    the cache served what the floor assumes comes from memory)."""
    found = []
    for case in cases:
        where = f"{case['model']} {case['dtypes']}"
        if case["memory_bandwidth"]["spread_pct"] > SPREAD_WARN_PCT:
            found.append(f"{where}: the memory bandwidth varied by {case['memory_bandwidth']['spread_pct']:.0f} % between rounds")
        for name, r in case["backends"].items():
            if r["time"]["spread_pct"] > SPREAD_WARN_PCT:
                found.append(f"{where} {name}: time spread {r['time']['spread_pct']:.0f} % (p10-p90 of the median): noisy")
            if r["pct_of_bandwidth"]["median"] > 100:
                found.append(f"{where} {name}: faster than the memory limit ({r['pct_of_bandwidth']['median']:.0f} %): "
                             "the set was served from cache, or the bandwidth was measured low")  # fmt: skip
    for r in overhead:
        where = f"overhead {r['inner']} {r['lookahead']}"
        if r["overhead_pct"]["spread_pct"] > SPREAD_WARN_PCT:
            found.append(f"{where}: spread {r['overhead_pct']['spread_pct']:.0f} % of its median: noisy")
        if r["overhead_pct"]["median"] < r["time_floor_pct"]["median"]:
            found.append(f"{where}: {r['overhead_pct']['median']:.1f} % is below the time floor "
                         f"{r['time_floor_pct']['median']:.1f} % (the sync's bytes at the measured bandwidth): "
                         "a measurement error")  # fmt: skip
        elif r["overhead_pct"]["median"] < r["floor_pct"]:
            found.append(f"{where}: {r['overhead_pct']['median']:.1f} % is below the {r['floor_pct']:.1f} % byte floor: "
                         "that floor assumes AdamW runs at the memory limit; this one runs slower, so the sync's "
                         "share of the step is smaller")  # fmt: skip
    return found


def main(argv=None):
    device_default = "cuda" if torch.cuda.is_available() else "cpu"
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=device_default)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=None, help="default: all that fit the device")
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=["fp32", "bf16+fp32"])
    parser.add_argument("--backends", nargs="+", default=None, help="default: every backend available for the device")
    parser.add_argument("--reps", type=int, default=None,
                        help="interleaved rounds per case (default: as many as fit in --seconds-per-case)")
    parser.add_argument("--seconds-per-case", type=float, default=None,
                        help=f"time budget of a case's rounds (default: {SECONDS_PER_CASE})")
    parser.add_argument("--overhead-model", choices=list(MODELS), default=None,
                        help="parameter set of the whole-step overhead (default: gpt2-small on a GPU, resnet50 on a CPU)")
    parser.add_argument("--no-overhead", action="store_true", help="skip the whole-step overhead")
    parser.add_argument("--momentum-models", nargs="*", choices=list(MODELS), default=None,
                        help="sets for the outer-momentum sync (default: gpt2-small on a GPU, resnet50 on a CPU; none: skip)")
    parser.add_argument("--json", type=Path, default=None, help="write every figure to this JSON file, and a PNG beside it")
    args = parser.parse_args(argv)  # fmt: skip

    device = torch.device(args.device)
    budget_s = args.seconds_per_case or SECONDS_PER_CASE[device.type]
    models = args.models or [m for m in MODELS if device.type == "cuda" or m != "decoder-1.3b"]
    backends = args.backends or timed_backends(device.type)
    device_name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    )

    cases = []
    todo = list(itertools.product(models, args.dtypes))
    for n, (model, dtype_name) in enumerate(todo, 1):
        print(f"  [{n}/{len(todo)}] {model} {dtype_name} ...", file=sys.stderr, flush=True)
        cases.append(run_case(model, dtype_name, device, backends, args.reps, budget_s))
    bandwidth = summary([c["memory_bandwidth"]["median_GBps"] for c in cases], unit="GBps")  # across the cases
    print_table(cases, bandwidth, device_name)
    overhead = []
    if not args.no_overhead:
        overhead_model = args.overhead_model or ("gpt2-small" if device.type == "cuda" else "resnet50")
        print(f"  whole-step overhead on {overhead_model} ...", file=sys.stderr, flush=True)
        overhead = step_overhead.measure(MODELS[overhead_model](), device, k=5, rounds=args.reps, budget_s=2 * budget_s)
        print_overhead(overhead, overhead_model)
        print(f"  LookaheadAdamW step by step on {overhead_model} ...", file=sys.stderr, flush=True)
        fused_step = adamw_step.measure(MODELS[overhead_model](), device, rounds=args.reps, budget_s=budget_s)
        print_adamw_step(fused_step, overhead_model)
    momentum_models = args.momentum_models
    if momentum_models is None:
        momentum_models = ["gpt2-small" if device.type == "cuda" else "resnet50"]
    momentum_cases = []
    for model in momentum_models:
        for dtype_name in args.dtypes:
            print(f"  outer momentum: {model} {dtype_name} ...", file=sys.stderr, flush=True)
            momentum_cases.append(outer_momentum.measure(model, MODELS[model](), *DTYPES[dtype_name], dtype_name, device,
                                                         args.reps, budget_s, *ROUNDS[device.type]))  # fmt: skip
    outer_momentum.print_table(momentum_cases, span)
    warnings = warnings_for(cases, overhead)
    if warnings:
        print(f"\nWarnings ({len(warnings)}):")
        print("\n".join(f"  - {w}" for w in warnings))
    report = {
        "date": datetime.date.today().isoformat(),
        "device": device_name,
        "torch": torch.__version__,
        "command": " ".join(["python", "bench/bench_sync.py", *(argv if argv is not None else sys.argv[1:])]),
        "seconds_per_case": budget_s,
        "allocator": {k: os.environ.get(k) for k in STEADY_ALLOCATOR},
        "memory_bandwidth_GBps": bandwidth,
        "cases": cases,
        "step_overhead": overhead,
        "lookahead_adamw_step": fused_step if not args.no_overhead else None,
        "outer_momentum": momentum_cases,
        "warnings": warnings,
    }
    if args.json:
        from plot import write_plot

        args.json.write_text(json.dumps(report, indent=2))
        write_plot(report, args.json.with_suffix(".png"))
        print(f"\nwrote {args.json} and {args.json.with_suffix('.png')}")
    return report


STEADY_ALLOCATOR = {"MALLOC_MMAP_THRESHOLD_": str(2**32), "MALLOC_TRIM_THRESHOLD_": str(2**34)}


def run_with_steady_allocator() -> None:
    """Re-run this script with glibc's malloc thresholds fixed, unless they already are (Linux only).

    [NOTE: steady allocator] glibc serves an allocation above a threshold with a fresh mmap that
    page-faults on first touch and is unmapped on free, and it moves that threshold (up to 32 MiB)
    as the process frees memory. Which of the pure-PyTorch baselines' temporaries (bf16 -> fp32
    copies) pay page faults on every sync therefore depends on the process's allocation history:
    two identical default runs measured "foreach" on GPT-2 bf16+fp32 at 92 ms and at 190 ms. With
    the thresholds fixed, every temporary comes from the heap and stays there: the baselines pay
    no page faults (the fairest to them) and runs agree. The fused kernels allocate nothing.
    """
    if sys.platform == "linux" and any(os.environ.get(k) != v for k, v in STEADY_ALLOCATOR.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **STEADY_ALLOCATOR})


if __name__ == "__main__":
    run_with_steady_allocator()
    main()
