"""Bytes of optimizer state per parameter, for each slow-state mode, counted from the state tensors.

Each mode builds its optimizer on the same model (MODEL_SHAPES, ~1 M parameters), takes one step
so that every state tensor exists, and counts the bytes of every tensor in the per-param state,
apart: Lookahead's own (opt.state: slow weights, outer momenta) and the inner optimizer's (AdamW's
moments and step counts). LookaheadAdamW keeps both in one state; its AdamW entries count as the
inner optimizer's. Params and grads are not optimizer state and are not counted.

    python bench/state_bytes.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math

import torch

from lookahead_fused import Lookahead, LookaheadAdamW, bf16_int8, int8_blocks

MODEL_SHAPES = [(1024, 512), (1024,), (512, 1024), (512,)]
ADAMW_KEYS = ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")


def lookahead_adam(params, **options):
    return Lookahead(torch.optim.AdamW(params, lr=1e-3), k=5, alpha=0.5, **options)


# (label, param dtype, how the optimizer is built)
MODES = [
    ("Lookahead, exact (slow in the param's dtype)", torch.float32, lookahead_adam),
    ("Lookahead + outer momentum (SNOO)", torch.float32, lambda ps: lookahead_adam(ps, outer_momentum=0.9)),
    ("Lookahead + outer momentum, momentum_dtype=bfloat16", torch.float32,
     lambda ps: lookahead_adam(ps, outer_momentum=0.9, momentum_dtype=torch.bfloat16)),
    ("Lookahead + outer momentum, momentum_dtype='int8'", torch.float32,
     lambda ps: lookahead_adam(ps, outer_momentum=0.9, momentum_dtype=int8_blocks.MOMENTUM_DTYPE)),
    ("Lookahead, slow_dtype='bf16+int8'", torch.float32,
     lambda ps: lookahead_adam(ps, slow_dtype=bf16_int8.SLOW_DTYPE)),
    ("Lookahead, bf16 params, slow_dtype=float32", torch.bfloat16,
     lambda ps: lookahead_adam(ps, slow_dtype=torch.float32)),
    ("Lookahead, bf16 params, exact (bf16 slow)", torch.bfloat16, lookahead_adam),
    ("Lookahead, bf16 params, slow_dtype='bf16+int8'", torch.bfloat16,
     lambda ps: lookahead_adam(ps, slow_dtype=bf16_int8.SLOW_DTYPE)),
    ("Lookahead + outer momentum, slow_dtype='bf16+int8'", torch.float32,
     lambda ps: lookahead_adam(ps, outer_momentum=0.9, slow_dtype=bf16_int8.SLOW_DTYPE)),
    ("Lookahead + outer momentum, slow_dtype='bf16+int8', momentum_dtype=bfloat16", torch.float32,
     lambda ps: lookahead_adam(ps, outer_momentum=0.9, slow_dtype=bf16_int8.SLOW_DTYPE, momentum_dtype=torch.bfloat16)),
    ("Lookahead + outer momentum, slow_dtype='bf16+int8', momentum_dtype='int8'", torch.float32,
     lambda ps: lookahead_adam(ps, outer_momentum=0.9, slow_dtype=bf16_int8.SLOW_DTYPE,
                               momentum_dtype=int8_blocks.MOMENTUM_DTYPE)),
    ("LookaheadAdamW, exact", torch.float32, lambda ps: LookaheadAdamW(ps, lr=1e-3, k=5, alpha=0.5)),
    ("LookaheadAdamW, slow_dtype='bf16+int8'", torch.float32,
     lambda ps: LookaheadAdamW(ps, lr=1e-3, k=5, alpha=0.5, slow_dtype=bf16_int8.SLOW_DTYPE)),
    ("LookaheadAdamW + outer momentum (SNOO)", torch.float32,
     lambda ps: LookaheadAdamW(ps, lr=1e-3, k=5, alpha=0.5, outer_momentum=0.9)),
    ("LookaheadAdamW + outer momentum, momentum_dtype=bfloat16", torch.float32,
     lambda ps: LookaheadAdamW(ps, lr=1e-3, k=5, alpha=0.5, outer_momentum=0.9, momentum_dtype=torch.bfloat16)),
    ("LookaheadAdamW + outer momentum, momentum_dtype='int8'", torch.float32,
     lambda ps: LookaheadAdamW(ps, lr=1e-3, k=5, alpha=0.5, outer_momentum=0.9, momentum_dtype=int8_blocks.MOMENTUM_DTYPE)),
    ("LookaheadAdamW + outer momentum, slow_dtype='bf16+int8', momentum_dtype=bfloat16", torch.float32,
     lambda ps: LookaheadAdamW(ps, lr=1e-3, k=5, alpha=0.5, outer_momentum=0.9, slow_dtype=bf16_int8.SLOW_DTYPE,
                               momentum_dtype=torch.bfloat16)),
    ("LookaheadAdamW + outer momentum, slow_dtype='bf16+int8', momentum_dtype='int8'", torch.float32,
     lambda ps: LookaheadAdamW(ps, lr=1e-3, k=5, alpha=0.5, outer_momentum=0.9, slow_dtype=bf16_int8.SLOW_DTYPE,
                               momentum_dtype=int8_blocks.MOMENTUM_DTYPE)),
    ("LookaheadAdamW, slow_dtype='int8-delta'", torch.float32,
     lambda ps: LookaheadAdamW(ps, lr=1e-3, k=5, alpha=0.5, slow_dtype=int8_blocks.DELTA_SLOW_DTYPE)),
    ("LookaheadAdamW, bf16 params, slow_dtype='int8-delta'", torch.bfloat16,
     lambda ps: LookaheadAdamW(ps, lr=1e-3, k=5, alpha=0.5, slow_dtype=int8_blocks.DELTA_SLOW_DTYPE)),
    ("LookaheadAdamW + outer momentum (SNOO), slow_dtype='int8-delta', momentum_dtype='int8'", torch.float32,
     lambda ps: LookaheadAdamW(ps, lr=1e-3, k=5, alpha=0.5, outer_momentum=0.9, slow_dtype=int8_blocks.DELTA_SLOW_DTYPE,
                               momentum_dtype=int8_blocks.MOMENTUM_DTYPE)),
    ("LookaheadAdamW + outer momentum, slow_dtype='int8-delta' (a float32 momentum)", torch.float32,
     lambda ps: LookaheadAdamW(ps, lr=1e-3, k=5, alpha=0.5, outer_momentum=0.9, slow_dtype=int8_blocks.DELTA_SLOW_DTYPE)),
    ("LookaheadAdamW + outer momentum, slow_dtype='int8-delta', momentum_dtype=bfloat16", torch.float32,
     lambda ps: LookaheadAdamW(ps, lr=1e-3, k=5, alpha=0.5, outer_momentum=0.9, slow_dtype=int8_blocks.DELTA_SLOW_DTYPE,
                               momentum_dtype=torch.bfloat16)),
]  # fmt: skip


def tensor_bytes(entries) -> int:
    return sum(value.numel() * value.element_size() for value in entries if isinstance(value, torch.Tensor))


def state_bytes(opt, params) -> tuple[int, int]:
    """(Lookahead's own state bytes, the inner optimizer's state bytes) over `params`."""
    inner = getattr(opt, "optimizer", None)
    own = inner_bytes = 0
    for p in params:
        entry = opt.state.get(p, {})
        if inner is None:  # LookaheadAdamW: one state
            inner_bytes += tensor_bytes(v for k, v in entry.items() if k in ADAMW_KEYS)
            own += tensor_bytes(v for k, v in entry.items() if k not in ADAMW_KEYS)
        else:
            own += tensor_bytes(entry.values())
            inner_bytes += tensor_bytes(inner.state.get(p, {}).values())
    return own, inner_bytes


def count(make_optimizer, dtype: torch.dtype, shapes=MODEL_SHAPES) -> dict:
    """Bytes per parameter of one mode, after one step."""
    params = [torch.nn.Parameter(torch.randn(shape).to(dtype)) for shape in shapes]
    opt = make_optimizer(params)
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()
    own, inner = state_bytes(opt, params)
    n = sum(math.prod(shape) for shape in shapes)
    return {"params": n, "lookahead": own / n, "inner": inner / n, "total": (own + inner) / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    results = {label: count(make, dtype) for label, dtype, make in MODES}
    print(f"{'mode':50s} {'Lookahead':>10s} {'inner':>8s} {'total':>8s}   bytes per parameter")
    for label, figures in results.items():
        print(f"{label:50s} {figures['lookahead']:10.3f} {figures['inner']:8.3f} {figures['total']:8.3f}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1)


if __name__ == "__main__":
    main()
