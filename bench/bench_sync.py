"""Time one Lookahead sync per backend on model-shaped parameter sets; compare with the copy floor.

    python bench/bench_sync.py                      # quick default, about a minute on a 2-core CPU
    python bench/bench_sync.py --models gpt2-small --dtypes bf16+fp32 --reps 50 --json out.json

Bytes a sync must move (../shared/DESIGN.md): numel * 2 * (fast bytes + slow bytes) per pair. The
floor is those bytes at the copy bandwidth measured in the same run (the faster of a large copy_
and a large in-place update, read plus write). Each backend's median time is reported with its GB/s, % of that bandwidth, and its
speed-up over "reference" (the per-tensor Python loop) and "foreach".
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_shapes import MODELS  # noqa: E402

from lookahead_fused import ops  # noqa: E402
from lookahead_fused.backends import backends_for_device  # noqa: E402

DTYPES = {  # name -> (fast dtype, slow dtype)
    "fp32": (torch.float32, torch.float32),
    "bf16": (torch.bfloat16, torch.bfloat16),
    "bf16+fp32": (torch.bfloat16, torch.float32),
}


def sync_bytes(shapes, fast_dtype, slow_dtype) -> int:
    per_element = 2 * (torch.empty(0, dtype=fast_dtype).element_size() + torch.empty(0, dtype=slow_dtype).element_size())
    return sum(math.prod(shape) for shape in shapes) * per_element


def _synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn, device, reps, warmup=2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        _synchronize(device)
        start = time.perf_counter()
        fn()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def copy_bandwidth(device, reps, nbytes=512 * 2**20) -> float:
    """Bytes per second (read plus write) of the faster of a large copy_ and a large in-place update.

    On a CPU a copy_ also reads every destination line before writing it (write-allocate), which an
    in-place update such as the sync does not pay, so copy_ alone would understate the floor there.
    """
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    copy = median_seconds(lambda: dst.copy_(src), device, reps)
    in_place = median_seconds(lambda: dst.mul_(1.0), device, reps)
    return 2 * nbytes / min(copy, in_place)


def make_set(shapes, fast_dtype, slow_dtype, device):
    fast = [torch.randn(shape, device=device).to(fast_dtype) for shape in shapes]
    slow = [f.to(slow_dtype) + 0.01 for f in fast]
    return fast, slow


def run_case(model, dtype_name, device, backends, reps, bandwidth) -> dict:
    shapes = MODELS[model]()
    fast_dtype, slow_dtype = DTYPES[dtype_name]
    fast, slow = make_set(shapes, fast_dtype, slow_dtype, device)
    nbytes = sync_bytes(shapes, fast_dtype, slow_dtype)
    case = {
        "model": model,
        "dtypes": dtype_name,
        "tensors": len(shapes),
        "params": sum(math.prod(s) for s in shapes),
        "bytes_per_sync": nbytes,
        "floor_ms": 1e3 * nbytes / bandwidth,
        "backends": {},
    }
    for name in backends:
        seconds = median_seconds(lambda name=name: ops.lookahead_sync_(fast, slow, 0.5, backend=name), device, reps)
        case["backends"][name] = {"ms": 1e3 * seconds, "GB/s": nbytes / seconds / 1e9, "pct_of_copy_bw": 100 * nbytes / seconds / bandwidth}
    for result in case["backends"].values():
        for base in ("reference", "foreach"):
            if base in case["backends"]:
                result[f"x_vs_{base}"] = case["backends"][base]["ms"] / result["ms"]
    return case


def print_table(cases, bandwidth, device_name):
    print(f"\nLookahead sync, {device_name}, copy bandwidth {bandwidth / 1e9:.1f} GB/s (read+write)")
    header = f"{'model':<13}{'dtypes':<11}{'tensors':>8}{'params':>13}{'floor ms':>10}  {'backend':<10}{'ms':>9}{'GB/s':>8}{'% bw':>7}{'x ref':>7}{'x foreach':>10}"
    print(header)
    print("-" * len(header))
    for case in cases:
        for i, (name, r) in enumerate(case["backends"].items()):
            lead = (
                f"{case['model']:<13}{case['dtypes']:<11}{case['tensors']:>8}{case['params']:>13,}{case['floor_ms']:>10.2f}"
                if i == 0
                else " " * 55
            )
            print(
                f"{lead}  {name:<10}{r['ms']:>9.2f}{r['GB/s']:>8.1f}{r['pct_of_copy_bw']:>7.0f}"
                f"{r.get('x_vs_reference', float('nan')):>7.2f}{r.get('x_vs_foreach', float('nan')):>10.2f}"
            )


def main(argv=None):
    device_default = "cuda" if torch.cuda.is_available() else "cpu"
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=device_default)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=None, help="default: all that fit the device")
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=["fp32", "bf16+fp32"])
    parser.add_argument("--backends", nargs="+", default=None, help="default: every backend available for the device")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions per case (default: 5 CPU, 50 GPU)")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    reps = args.reps or (50 if device.type == "cuda" else 5)
    models = args.models or [m for m in MODELS if device.type == "cuda" or m != "decoder-1.3b"]
    # Triton on CPU tensors is its interpreter (for tests): no timing to report.
    backends = args.backends or [b for b in backends_for_device(device.type) if device.type == "cuda" or b != "triton"]
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"

    bandwidth = copy_bandwidth(device, reps)
    cases = []
    for model in models:
        for dtype_name in args.dtypes:
            print(f"  measuring {model} {dtype_name} ...", file=sys.stderr, flush=True)
            cases.append(run_case(model, dtype_name, device, backends, reps, bandwidth))
    print_table(cases, bandwidth, device_name)
    report = {
        "date": datetime.date.today().isoformat(),
        "device": device_name,
        "torch": torch.__version__,
        "command": " ".join(["python", "bench/bench_sync.py", *(argv if argv is not None else sys.argv[1:])]),
        "reps": reps,
        "copy_bandwidth_GBps": bandwidth / 1e9,
        "cases": cases,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
        print(f"\nwrote {args.json}")
    return report


if __name__ == "__main__":
    main()
