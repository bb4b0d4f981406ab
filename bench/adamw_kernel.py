"""The fused AdamW op alone (ops.lookahead_adamw_step_), one 4M-element tensor per dtype pair, in ns
per element: the step alone, with the sync, with the momentum sync, and for slow weights kept as
int8-delta offsets (ops.lookahead_adamw_delta_step_, on the pairs of one dtype) its step, its sync
step and its sync step beside an int8, a float32 and a bfloat16 outer momentum, for bf16+int8 slow weights
(on the pairs of one dtype) the sync step in AdamW's pass (ops.lookahead_adamw_compact_step_) and the same
as two launches (the step alone, then ops.lookahead_compact_sync_), for an int8 outer momentum beside
float32 slow weights (and beside bf16+int8 ones) the sync step in AdamW's pass
(ops.lookahead_adamw_int8_momentum_step_) and the same as two launches (the step alone, then the int8
momentum sync), against torch's fused AdamW kernel
(torch._fused_adamw_) on the same tensors where torch has one. Interleaved rounds, medians.

    python bench/adamw_kernel.py [--threads N] [--numel N] [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from timing import interleaved_rounds

from lookahead_fused import bf16_int8, int8_blocks, ops
from lookahead_fused.contract import ADAMW_COLUMNS, COMPACT_FAST_DTYPES, DTYPE_PAIRS, INT8_DELTA_PARAM_DTYPES
from lookahead_fused.contract import INT8_MOMENTUM_FAST_DTYPES


def variants(fast_dtype, slow_dtype, numel: int) -> dict:
    p, g = torch.randn(numel, dtype=fast_dtype), torch.randn(numel, dtype=fast_dtype) * 1e-3
    m, v = torch.zeros(numel, dtype=fast_dtype), torch.zeros(numel, dtype=fast_dtype)
    slow, momentum = p.to(slow_dtype, copy=True), torch.zeros(numel, dtype=slow_dtype)
    rows = torch.zeros(1, dtype=torch.int64)

    def table(syncs):
        row = {"lr": 1e-4, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 1e-2, "step": 3.0,
               "alpha": 0.5, "sync": float(syncs), "maximize": 0.0}  # fmt: skip
        return torch.tensor([[row[c] for c in ADAMW_COLUMNS]], dtype=torch.float64)

    step, sync = table(False), table(True)
    found = {
        "step": lambda: ops.lookahead_adamw_step_([p], [g], [m], [v], [slow], step, rows),
        "step+sync": lambda: ops.lookahead_adamw_step_([p], [g], [m], [v], [slow], sync, rows),
        "step+momentum sync": lambda: ops.lookahead_adamw_step_([p], [g], [m], [v], [slow], sync, rows,
                                                                momentum=[momentum], mu=0.9, nesterov=True),  # fmt: skip
    }
    if fast_dtype == slow_dtype and fast_dtype in INT8_DELTA_PARAM_DTYPES:
        codes, scales = (torch.zeros(numel, dtype=torch.int8), torch.zeros(int8_blocks.scale_count(numel)))
        found["int8-delta step"] = lambda: ops.lookahead_adamw_delta_step_([p], [g], [m], [v], [codes], [scales], step, rows)
        found["int8-delta sync step"] = lambda: ops.lookahead_adamw_delta_step_([p], [g], [m], [v], [codes], [scales],
                                                                                sync, rows)  # fmt: skip
        outer = (torch.zeros(numel, dtype=torch.int8), torch.zeros(int8_blocks.scale_count(numel)))
        found["int8-delta + int8 momentum sync step"] = lambda: ops.lookahead_adamw_delta_step_(
            [p], [g], [m], [v], [codes], [scales], sync, rows, momentum=[outer[0]], momentum_scales=[outer[1]], mu=0.9,
            nesterov=True)  # fmt: skip
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            found[f"int8-delta + {name} momentum sync step"] = _delta_float_momentum_step(
                (p, g, m, v, codes, scales), torch.zeros(numel, dtype=dtype), sync, rows)
    codes, scales = torch.zeros(numel, dtype=torch.int8), torch.zeros(int8_blocks.scale_count(numel))
    if slow_dtype == torch.float32 and fast_dtype in INT8_MOMENTUM_FAST_DTYPES:
        found["int8 momentum sync step"] = lambda: ops.lookahead_adamw_int8_momentum_step_(
            [p], [g], [m], [v], [slow], [codes], [scales], sync, rows, mu=0.9, nesterov=True)  # fmt: skip
        found["int8 momentum: step, then its sync"] = lambda: (
            ops.lookahead_adamw_step_([p], [g], [m], [v], [], step, rows),
            ops.lookahead_int8_momentum_sync_([p], [slow], [codes], [scales], 0.5, mu=0.9, nesterov=True),
        )
    if fast_dtype == slow_dtype and fast_dtype in COMPACT_FAST_DTYPES:
        high, low = bf16_int8.encode(p.float())
        found["bf16+int8 + int8 momentum sync step"] = lambda: ops.lookahead_adamw_int8_momentum_step_(
            [p], [g], [m], [v], [high], [codes], [scales], sync, rows, slow_low=[low], mu=0.9, nesterov=True)  # fmt: skip
        found["bf16+int8 + int8 momentum: step, then its sync"] = lambda: (
            ops.lookahead_adamw_step_([p], [g], [m], [v], [], step, rows),
            ops.lookahead_compact_sync_([p], [high], [low], 0.5, momentum=[codes], momentum_scales=[scales], mu=0.9,
                                        nesterov=True),
        )
        found["bf16+int8 sync step"] = lambda: ops.lookahead_adamw_compact_step_([p], [g], [m], [v], [high], [low], sync,
                                                                                 rows)  # fmt: skip
        found["bf16+int8 step, then its sync"] = lambda: (
            ops.lookahead_adamw_step_([p], [g], [m], [v], [], step, rows),
            ops.lookahead_compact_sync_([p], [high], [low], 0.5),
        )
    torch_step = [torch.tensor(3.0)]
    try:
        torch._fused_adamw_([p.clone()], [g], [m.clone()], [v.clone()], [], [torch.tensor(3.0)], lr=1e-4, beta1=0.9,
                            beta2=0.999, weight_decay=1e-2, eps=1e-8, amsgrad=False, maximize=False)  # fmt: skip
        tp, tm, tv = p.clone(), m.clone(), v.clone()
        found["torch fused AdamW"] = lambda: torch._fused_adamw_([tp], [g], [tm], [tv], [], torch_step, lr=1e-4, beta1=0.9,
                                                                 beta2=0.999, weight_decay=1e-2, eps=1e-8,
                                                                 amsgrad=False, maximize=False)  # fmt: skip
    except RuntimeError:
        pass
    return found


def _delta_float_momentum_step(tensors, momentum, table, rows):
    """A sync step of int8-delta offsets beside a float outer momentum (Nesterov, mu 0.9)."""
    return lambda: ops.lookahead_adamw_delta_step_(*([t] for t in tensors), table, rows, momentum=[momentum], mu=0.9,
                                                   nesterov=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--numel", type=int, default=1 << 22)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"ns per element, median of {args.rounds} interleaved rounds, {args.numel} elements, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    for fast_dtype, slow_dtype in DTYPE_PAIRS:
        samples = interleaved_rounds(variants(fast_dtype, slow_dtype, args.numel), torch.device("cpu"), args.rounds)
        name = f"{str(fast_dtype).removeprefix('torch.')} + {str(slow_dtype).removeprefix('torch.')} slow"
        print(f"  {name:<28}" + "".join(f"  {k}: {1e9 * statistics.median(s) / args.numel:5.2f}" for k, s in samples.items()))


if __name__ == "__main__":
    main()
