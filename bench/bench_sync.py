"""Time one Lookahead sync per backend on model-shaped parameter sets; compare with the memory floor.

    python bench/bench_sync.py                      # quick default, about a minute on a 2-core CPU
    python bench/bench_sync.py --models gpt2-small --dtypes bf16+fp32 --reps 50 --json out.json

Bytes a sync must move (../shared/DESIGN.md): numel * 2 * (fast bytes + slow bytes) per pair. The
floor is those bytes at the bandwidth measured in the same run (timing.copy_bandwidth). Each
backend's median time is reported with its GB/s, % of that bandwidth, its speed-up over
"reference" (the per-tensor Python loop) and "foreach", and, on a GPU, kernel launches per sync.
Sets smaller than a few times the cache are rotated between copies so the cache does not flatter
them. Then the whole-step overhead of Lookahead over AdamW (step_overhead.py), and a PNG figure.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import math
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import step_overhead  # noqa: E402
from model_shapes import MODELS  # noqa: E402
from timing import cache_bytes, copy_bandwidth, kernel_launches, median_seconds  # noqa: E402

from lookahead_fused import ops  # noqa: E402
from lookahead_fused.backends import backends_for_device  # noqa: E402

DTYPES = {  # name -> (fast dtype, slow dtype)
    "fp32": (torch.float32, torch.float32),
    "bf16": (torch.bfloat16, torch.bfloat16),
    "bf16+fp32": (torch.bfloat16, torch.float32),
}
MAX_COPIES = 8


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


def run_case(model, dtype_name, device, backends, reps, bandwidth) -> dict:
    shapes = MODELS[model]()
    fast_dtype, slow_dtype = DTYPES[dtype_name]
    nbytes = sync_bytes(shapes, fast_dtype, slow_dtype)
    copies = max(1, min(MAX_COPIES, math.ceil(4 * cache_bytes(device) / (nbytes / 2))))
    sets = [make_set(shapes, fast_dtype, slow_dtype, device) for _ in range(copies)]
    case = {
        "model": model,
        "dtypes": dtype_name,
        "tensors": len(shapes),
        "params": sum(math.prod(s) for s in shapes),
        "bytes_per_sync": nbytes,
        "floor_ms": 1e3 * nbytes / bandwidth,
        "rotated_copies": copies,
        "backends": {},
    }
    for name in backends:
        rotation = itertools.cycle(sets)

        def one_sync(name=name, rotation=rotation):
            fast, slow = next(rotation)
            ops.lookahead_sync_(fast, slow, 0.5, backend=name)

        seconds = median_seconds(one_sync, device, reps)
        case["backends"][name] = {
            "ms": 1e3 * seconds,
            "GB/s": nbytes / seconds / 1e9,
            "pct_of_copy_bw": 100 * nbytes / seconds / bandwidth,
            "launches_per_sync": kernel_launches(one_sync, device),
        }
    for result in case["backends"].values():
        for base in ("reference", "foreach"):
            if base in case["backends"]:
                result[f"x_vs_{base}"] = case["backends"][base]["ms"] / result["ms"]
    return case


def print_table(cases, bandwidth, device_name):
    print(f"\nLookahead sync, {device_name}, copy bandwidth {bandwidth / 1e9:.1f} GB/s (read+write)")
    header = (
        f"{'model':<13}{'dtypes':<11}{'tensors':>8}{'params':>13}{'floor ms':>10}  {'backend':<10}"
        f"{'ms':>9}{'GB/s':>8}{'% bw':>7}{'x ref':>7}{'x foreach':>10}{'launches':>9}"
    )
    print(header)
    print("-" * len(header))
    for case in cases:
        for i, (name, r) in enumerate(case["backends"].items()):
            lead = (
                f"{case['model']:<13}{case['dtypes']:<11}{case['tensors']:>8}{case['params']:>13,}{case['floor_ms']:>10.2f}"
                if i == 0
                else " " * 55
            )
            launches = "-" if r["launches_per_sync"] is None else str(r["launches_per_sync"])
            print(
                f"{lead}  {name:<10}{r['ms']:>9.2f}{r['GB/s']:>8.1f}{r['pct_of_copy_bw']:>7.0f}"
                f"{r.get('x_vs_reference', float('nan')):>7.2f}{r.get('x_vs_foreach', float('nan')):>10.2f}{launches:>9}"
            )


def print_overhead(rows, model):
    print(f"\nWhole-step overhead of Lookahead (k={rows[0]['k']}) over AdamW alone, {model}, fp32:")
    for r in rows:
        print(
            f"  {r['inner']:<14} {r['lookahead']:<12} {r['k']} steps {r['k_steps_ms']:8.2f} ms, "
            f"with Lookahead {r['k_steps_with_lookahead_ms']:8.2f} ms:"
            f" overhead {r['overhead_pct']:5.1f} % (physical floor {r['floor_pct']:.1f} %)"
        )


def main(argv=None):
    device_default = "cuda" if torch.cuda.is_available() else "cpu"
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=device_default)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=None, help="default: all that fit the device")
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=["fp32", "bf16+fp32"])
    parser.add_argument("--backends", nargs="+", default=None, help="default: every backend available for the device")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions per case (default: 5 CPU, 50 GPU)")
    parser.add_argument("--overhead-model", choices=list(MODELS), default=None,
                        help="parameter set of the whole-step overhead (default: gpt2-small on a GPU, resnet50 on a CPU)")
    parser.add_argument("--no-overhead", action="store_true", help="skip the whole-step overhead")
    parser.add_argument("--json", type=Path, default=None, help="write every figure to this JSON file, and a PNG beside it")
    args = parser.parse_args(argv)  # fmt: skip

    device = torch.device(args.device)
    reps = args.reps or (50 if device.type == "cuda" else 5)
    models = args.models or [m for m in MODELS if device.type == "cuda" or m != "decoder-1.3b"]
    backends = args.backends or timed_backends(device.type)
    device_name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    )

    bandwidth = copy_bandwidth(device, reps)
    cases = []
    todo = list(itertools.product(models, args.dtypes))
    for n, (model, dtype_name) in enumerate(todo, 1):
        print(f"  [{n}/{len(todo)}] {model} {dtype_name} ...", file=sys.stderr, flush=True)
        cases.append(run_case(model, dtype_name, device, backends, reps, bandwidth))
    print_table(cases, bandwidth, device_name)
    overhead = []
    if not args.no_overhead:
        overhead_model = args.overhead_model or ("gpt2-small" if device.type == "cuda" else "resnet50")
        print(f"  whole-step overhead on {overhead_model} ...", file=sys.stderr, flush=True)
        overhead = step_overhead.measure(MODELS[overhead_model](), device, k=5, reps=reps)
        print_overhead(overhead, overhead_model)
    report = {
        "date": datetime.date.today().isoformat(),
        "device": device_name,
        "torch": torch.__version__,
        "command": " ".join(["python", "bench/bench_sync.py", *(argv if argv is not None else sys.argv[1:])]),
        "reps": reps,
        "copy_bandwidth_GBps": bandwidth / 1e9,
        "cases": cases,
        "step_overhead": overhead,
    }
    if args.json:
        from plot import write_plot

        args.json.write_text(json.dumps(report, indent=2))
        write_plot(report, args.json.with_suffix(".png"))
        print(f"\nwrote {args.json} and {args.json.with_suffix('.png')}")
    return report


if __name__ == "__main__":
    main()
