"""The sync with outer momentum (mu = 0.9, Nesterov: SNOO's outer step) against what users run today.

    fused   ops.lookahead_sync_(fast, slow, alpha, momentum=m, mu=, nesterov=True): one launch,
            reading and writing fast, slow and m once: 2 x (fast + 2 x slow bytes) per param
    bf16m   the same with a bfloat16 m beside float32 slow weights (momentum_dtype=torch.bfloat16):
            2 x (fast + slow + 2) bytes, so at the same bandwidth its time over fused's is that
            ratio (20/24 = 0.83 for fp32, 16/20 = 0.80 for bf16 with fp32 slow); "x fused" is
            fused's time over its
    int8m   the same with m as int8 blocks beside float32 slow weights (momentum_dtype="int8",
            ops.lookahead_int8_momentum_sync_): 2 x (fast + slow + 1 + 4/256) bytes, 18.03/24 = 0.75 of
            fused's for fp32 (14.03/20 = 0.70 for bf16 with fp32 slow) if it ran at the same bandwidth
    loop    the same math per tensor in PyTorch ops (the "reference" backend)
    sgd     a torch.optim.SGD(momentum=mu, nesterov=True, foreach) over the slow weights, fed the
            pseudo-gradient slow - fast, then fast <- slow: DiLoCo's outer step with one worker

Timed in interleaved rounds with the two bandwidth timings (timing.py); each round gives the floor
(the fused update's bytes at that round's bandwidth), each variant's % of it, and its speed-ups over
"loop" and "sgd". All three compute the same update (tests/test_momentum_op.py checks it).
"""

from __future__ import annotations

import math
import statistics

import torch
from timing import per_round, rounds_with_bandwidth, summary

from lookahead_fused import int8_blocks, ops

MU, ALPHA = 0.9, 0.5


def _variants(fast, slow, momentum, backend):
    sgd_slow = [torch.nn.Parameter(s.clone()) for s in slow]
    sgd_fast = [f.clone() for f in fast]
    sgd = torch.optim.SGD(sgd_slow, lr=ALPHA, momentum=MU, nesterov=True, foreach=True)
    wide_fast = lambda: [f if f.dtype == s.dtype else f.to(s.dtype) for f, s in zip(sgd_fast, sgd_slow)]  # noqa: E731

    def sgd_step():
        grads = torch._foreach_sub([s.detach() for s in sgd_slow], wide_fast())
        for s, g in zip(sgd_slow, grads):
            s.grad = g
        sgd.step()
        torch._foreach_copy_(sgd_fast, [s.detach() for s in sgd_slow])

    loop_fast, loop_slow, loop_momentum = [f.clone() for f in fast], [s.clone() for s in slow], [m.clone() for m in momentum]
    narrow_fast, narrow_slow = [f.clone() for f in fast], [s.clone() for s in slow]
    narrow_momentum = [m.to(torch.bfloat16) for m in momentum]
    variants = {
        "fused": lambda: ops.lookahead_sync_(fast, slow, ALPHA, momentum=momentum, mu=MU, nesterov=True, backend=backend),
        "loop": lambda: ops.lookahead_sync_(loop_fast, loop_slow, ALPHA, momentum=loop_momentum, mu=MU, nesterov=True,
                                            backend="reference"),  # fmt: skip
        "sgd": sgd_step,
    }
    int8_fast, int8_slow = [f.clone() for f in fast], [s.clone() for s in slow]
    int8_codes = [torch.zeros_like(m, dtype=torch.int8) for m in momentum]
    int8_scales = [torch.zeros(int8_blocks.scale_count(m.numel()), device=m.device) for m in momentum]
    if slow[0].dtype == torch.float32:
        variants["bf16m"] = lambda: ops.lookahead_sync_(narrow_fast, narrow_slow, ALPHA, momentum=narrow_momentum, mu=MU,
                                                        nesterov=True, backend=backend)  # fmt: skip
        variants["int8m"] = lambda: ops.lookahead_int8_momentum_sync_(int8_fast, int8_slow, int8_codes, int8_scales, ALPHA,
                                                                      MU, True, backend=backend)  # fmt: skip
    return variants


def momentum_bytes(name: str, numel: int) -> float:
    """The bytes of outer momentum of `numel` elements that a variant reads (and writes): bf16m's
    bfloat16, int8m's codes and scales; None for the others, whose momentum is in the slow dtype."""
    if name == "bf16m":
        return 2 * numel
    if name == "int8m":
        return numel + 4 * int8_blocks.scale_count(numel)
    return None


def measure(model: str, shapes, fast_dtype, slow_dtype, dtype_name: str, device, rounds, budget_s, least, most) -> dict:
    fast = [torch.randn(shape, device=device).to(fast_dtype) for shape in shapes]
    slow = [f.to(slow_dtype) + 0.01 for f in fast]
    momentum = [torch.zeros_like(s) for s in slow]
    element = torch.empty(0, dtype=fast_dtype).element_size() + 2 * torch.empty(0, dtype=slow_dtype).element_size()
    params = sum(math.prod(s) for s in shapes)
    nbytes = params * 2 * element
    variants = _variants(fast, slow, momentum, "auto")
    samples, bandwidth = rounds_with_bandwidth(variants, device, rounds, budget_s, least, most)
    floor = per_round(lambda bytes_per_second: nbytes / bytes_per_second, bandwidth)
    case = {
        "model": model,
        "dtypes": dtype_name,
        "mu": MU,
        "nesterov": True,
        "tensors": len(shapes),
        "params": params,
        "bytes_per_sync": nbytes,
        "memory_bandwidth": summary(bandwidth, 1e-9, "GBps"),
        "floor": summary(floor, 1e3, "ms"),
        "variants": {},
    }
    slow_bytes = torch.empty(0, dtype=slow_dtype).element_size()
    for name in variants:
        times = samples[name]
        narrow = [momentum_bytes(name, math.prod(shape)) for shape in shapes]
        moved = nbytes if None in narrow else 2 * (params * (element - slow_bytes) + sum(narrow))
        own_floor = [f * moved / nbytes for f in floor]
        case["variants"][name] = {
            "time": summary(times, 1e3, "ms"),
            "GB/s": moved / statistics.median(times) / 1e9,
            "pct_of_bandwidth": summary(per_round(lambda f, t: 100 * f / t, own_floor, times)),
            "x_vs_loop": summary(per_round(lambda b, t: b / t, samples["loop"], times)),
            "x_vs_sgd": summary(per_round(lambda b, t: b / t, samples["sgd"], times)),
            "x_vs_fused": summary(per_round(lambda b, t: b / t, samples["fused"], times)),
        }
    return case


def print_table(cases, span) -> None:
    if not cases:
        return
    print(f"\nLookahead sync with outer momentum (mu={MU}, Nesterov), alpha={ALPHA}: fused vs the per-tensor loop and "
          "torch SGD on pseudo-gradients; median [p10-p90] over the rounds")  # fmt: skip
    header = f"{'model':<13}{'dtypes':<11}{'params':>13}{'floor ms':>22}  {'variant':<8}{'ms':>22}{'% of limit':>18}{'x loop':>20}{'x sgd':>20}{'x fused':>20}"
    print(header)
    print("-" * len(header))
    for case in cases:
        for i, (name, r) in enumerate(case["variants"].items()):
            lead = f"{case['model']:<13}{case['dtypes']:<11}{case['params']:>13,}{span(case['floor'], 'ms'):>22}" if i == 0 else " " * 59
            print(f"{lead}  {name:<8}{span(r['time'], 'ms'):>22}{span(r['pct_of_bandwidth'], digits=0):>18}"
                  f"{span(r['x_vs_loop']):>20}{span(r['x_vs_sgd']):>20}{span(r['x_vs_fused']):>20}")  # fmt: skip
