"""torch.library.opcheck (schema, fake tensors, autograd registration, AOT dispatch) on every op of
every backend that registers one: each op of the op list (lookahead_fused/op_list.py) as the C++
extension registers it (csrc/module.cpp), on CUDA too when there is a GPU, and as the Triton
backend's custom op triton_<name> (lookahead_fused/backends/triton/__init__.py; without a GPU it
runs in Triton's interpreter on CPU tensors). Each op has its argument sets here: both dtype pairs
of one storage size and a widened one, sync and non-sync steps."""

import pytest
import torch

from lookahead_fused import available_backends, bf16_int8, int8_blocks
from lookahead_fused.contract import ADAMW_COLUMNS
from lookahead_fused.op_list import OP_NAMES

from .matrix import make_pair_lists

SIZES = [3, 17]
PAIRS = [(torch.float32, torch.float32), (torch.bfloat16, torch.float32)]
ALPHA, MU, K = 0.4, 0.9, 3
ROW = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, step=3.0, alpha=ALPHA, sync=0.0, maximize=0.0)


def _triple(fast_dtype, slow_dtype):
    """fast, slow and a momentum (slow's dtype) for each size."""
    fast, slow = make_pair_lists(SIZES, fast_dtype, slow_dtype)
    _, momentum = make_pair_lists(SIZES, fast_dtype, slow_dtype, seed=1)
    return fast, slow, momentum


def _gate(step):
    return torch.tensor(ALPHA, dtype=torch.float64), torch.tensor(step)


def sync_args():
    return [(*make_pair_lists(SIZES, f, s), ALPHA) for f, s in PAIRS]


def sync_on_step_args():
    return [(*make_pair_lists(SIZES, f, s), *_gate(step), K) for f, s in PAIRS for step in (2, 3)]


def swap_args():
    return [make_pair_lists(SIZES, f, f) for f, _ in PAIRS]


def momentum_sync_args():
    return [(*_triple(f, s), ALPHA, MU, nesterov) for f, s in PAIRS for nesterov in (False, True)]


def momentum_sync_on_step_args():
    return [(*_triple(f, s), *_gate(step), K, MU, True) for f, s in PAIRS for step in (2, 3)]


def adamw_step_args():
    """params, grads, exp_avgs, exp_avg_sqs, slow, momentum, hyper, rows, mu, nesterov: a step without
    a sync, one with the plain sync, one with the momentum sync."""
    cases = []
    for (f, s), sync, mu in [(PAIRS[0], 0.0, 0.0), (PAIRS[1], 1.0, 0.0), (PAIRS[1], 1.0, MU)]:
        params, slow, momentum = _triple(f, s)
        grads, exp_avgs = make_pair_lists(SIZES, f, f, seed=2)
        exp_avg_sqs = [(g.float() ** 2 + 0.1).to(f) for g in make_pair_lists(SIZES, f, f, seed=3)[0]]
        hyper = torch.tensor([[dict(ROW, sync=sync)[c] for c in ADAMW_COLUMNS]], dtype=torch.float64)
        rows = torch.zeros(len(SIZES), dtype=torch.int64)
        cases.append((params, grads, exp_avgs, exp_avg_sqs, slow, momentum if mu else [], hyper, rows, mu, True))
    return cases


def compact_sync_args():
    """float32 and bfloat16 fast tensors, each with its slow weight as bf16+int8."""
    cases = []
    for fast_dtype in (torch.float32, torch.bfloat16):
        fast, slow = make_pair_lists(SIZES, fast_dtype, torch.float32)
        high, low = zip(*map(bf16_int8.encode, slow))
        cases.append((fast, list(high), list(low), ALPHA))
    return cases


def compact_sync_on_step_args():
    return [(*case[:3], *_gate(step), K) for case in compact_sync_args() for step in (2, 3)]


def int8_momentum_sync_args():
    """float32 and bfloat16 fast tensors, float32 slow weights, each with an int8 block-scaled momentum."""
    cases = []
    for (fast_dtype, slow_dtype), nesterov in zip(PAIRS, (False, True)):
        fast, slow, momentum = _triple(fast_dtype, slow_dtype)
        codes, scales = zip(*(int8_blocks.encode(m.float().reshape(-1)) for m in momentum))
        cases.append((fast, slow, list(codes), list(scales), ALPHA, MU, nesterov))
    return cases


def int8_momentum_sync_on_step_args():
    return [(*case[:4], *_gate(step), K, MU, True) for case in int8_momentum_sync_args() for step in (2, 3)]


def compact_momentum_sync_args():
    """compact_sync_args' with a float32 momentum beside float32 fast tensors and a bfloat16 one beside
    bfloat16 ones."""
    return [(*case[:3], [torch.zeros_like(f, dtype=f.dtype) for f in case[0]], ALPHA, MU, nesterov)
            for case, nesterov in zip(compact_sync_args(), (False, True))]  # fmt: skip


def compact_momentum_sync_on_step_args():
    return [(*case[:4], *_gate(step), K, MU, True) for case in compact_momentum_sync_args() for step in (2, 3)]


def compact_int8_momentum_sync_args():
    """compact_sync_args' with an int8 block-scaled momentum beside them."""
    cases = []
    for case, nesterov in zip(compact_sync_args(), (False, True)):
        codes, scales = zip(*(int8_blocks.encode(0.1 * torch.randn(f.numel())) for f in case[0]))
        cases.append((*case[:3], list(codes), list(scales), ALPHA, MU, nesterov))
    return cases


def compact_int8_momentum_sync_on_step_args():
    return [(*case[:5], *_gate(step), K, MU, True) for case in compact_int8_momentum_sync_args() for step in (2, 3)]


def pseudo_gradient_args():
    """out in the slow dtype for every pair, and in bfloat16 beside float32 slow weights."""
    outs = [(f, s, s) for f, s in PAIRS] + [(f, s, torch.bfloat16) for f, s in PAIRS if s == torch.float32]
    return [(*make_pair_lists(SIZES, f, s), [torch.zeros(n, dtype=o) for n in SIZES]) for f, s, o in outs]


def adamw_delta_step_args():
    """params, grads, exp_avgs, exp_avg_sqs, delta, scales, momentum, momentum_scales, hyper, rows, mu,
    nesterov: float32 params off a sync step, bfloat16 ones on one, each with an int8-delta offset state;
    on a sync step beside an int8 outer momentum too (bfloat16 params), and beside a float32 and a bfloat16
    one (float32 params)."""
    cases = []
    for dtype, sync, outer in [(torch.float32, 0.0, None), (torch.bfloat16, 1.0, None), (torch.bfloat16, 1.0, torch.int8),
                               (torch.float32, 1.0, torch.float32), (torch.float32, 1.0, torch.bfloat16)]:  # fmt: skip
        params, slow = make_pair_lists(SIZES, dtype, torch.float32)
        grads, exp_avgs = make_pair_lists(SIZES, dtype, dtype, seed=2)
        exp_avg_sqs = [(g.float() ** 2 + 0.1).to(dtype) for g in make_pair_lists(SIZES, dtype, dtype, seed=3)[0]]
        codes, scales = zip(*(int8_blocks.encode((s - p.float()) * 0.01) for p, s in zip(params, slow)))
        hyper = torch.tensor([[dict(ROW, sync=sync)[c] for c in ADAMW_COLUMNS]], dtype=torch.float64)
        rows = torch.zeros(len(SIZES), dtype=torch.int64)
        momentum, momentum_scales = ([], [])
        if outer == torch.int8:
            momentum, momentum_scales = (list(x) for x in zip(*(int8_blocks.encode(g.float()) for g in grads)))
        elif outer is not None:
            momentum = [g.to(outer, copy=True) for g in grads]
        cases.append((params, grads, exp_avgs, exp_avg_sqs, list(codes), list(scales), momentum, momentum_scales,
                      hyper, rows, 0.0 if outer is None else 0.9, outer is not None))  # fmt: skip
    return cases


def adamw_compact_step_args():
    """params, grads, exp_avgs, exp_avg_sqs, slow_high, slow_low, momentum, hyper, rows, mu, nesterov:
    float32 params off a sync step, bfloat16 ones on one, each with its slow weight as bf16+int8; on a sync
    step beside a float32 and a bfloat16 outer momentum too (float32 params)."""
    cases = []
    for dtype, sync, outer in [(torch.float32, 0.0, None), (torch.bfloat16, 1.0, None), (torch.float32, 1.0, torch.float32),
                               (torch.float32, 1.0, torch.bfloat16)]:  # fmt: skip
        params, slow = make_pair_lists(SIZES, dtype, torch.float32)
        grads, exp_avgs = make_pair_lists(SIZES, dtype, dtype, seed=2)
        exp_avg_sqs = [(g.float() ** 2 + 0.1).to(dtype) for g in make_pair_lists(SIZES, dtype, dtype, seed=3)[0]]
        high, low = zip(*map(bf16_int8.encode, slow))
        hyper = torch.tensor([[dict(ROW, sync=sync)[c] for c in ADAMW_COLUMNS]], dtype=torch.float64)
        rows = torch.zeros(len(SIZES), dtype=torch.int64)
        momentum = [] if outer is None else [g.to(outer, copy=True) for g in grads]
        cases.append((params, grads, exp_avgs, exp_avg_sqs, list(high), list(low), momentum, hyper, rows,
                      0.0 if outer is None else MU, outer is not None))  # fmt: skip
    return cases


def adamw_int8_momentum_step_args():
    """params, grads, exp_avgs, exp_avg_sqs, slow, slow_low, momentum, scales, hyper, rows, mu, nesterov:
    float32 params with float32 slow weights off a sync step, bfloat16 ones with bf16+int8 slow weights on
    one, each with an int8 outer momentum beside it."""
    cases = []
    for dtype, sync, compact in [(torch.float32, 0.0, False), (torch.bfloat16, 1.0, True), (torch.float32, 1.0, False)]:
        params, slow = make_pair_lists(SIZES, dtype, torch.float32)
        grads, exp_avgs = make_pair_lists(SIZES, dtype, dtype, seed=2)
        exp_avg_sqs = [(g.float() ** 2 + 0.1).to(dtype) for g in make_pair_lists(SIZES, dtype, dtype, seed=3)[0]]
        low = []
        if compact:
            slow, low = (list(x) for x in zip(*map(bf16_int8.encode, slow)))
        codes, scales = (list(x) for x in zip(*(int8_blocks.encode(0.1 * g.float().reshape(-1)) for g in grads)))
        hyper = torch.tensor([[dict(ROW, sync=sync)[c] for c in ADAMW_COLUMNS]], dtype=torch.float64)
        rows = torch.zeros(len(SIZES), dtype=torch.int64)
        cases.append((params, grads, exp_avgs, exp_avg_sqs, slow, low, codes, scales, hyper, rows, MU, compact))
    return cases


ARGUMENT_SETS = {  # op name (of OP_NAMES) -> its argument sets
    "sync_": sync_args,
    "sync_on_step_": sync_on_step_args,
    "swap_": swap_args,
    "momentum_sync_": momentum_sync_args,
    "momentum_sync_on_step_": momentum_sync_on_step_args,
    "adamw_step_": adamw_step_args,
    "compact_sync_": compact_sync_args,
    "compact_sync_on_step_": compact_sync_on_step_args,
    "int8_momentum_sync_": int8_momentum_sync_args,
    "int8_momentum_sync_on_step_": int8_momentum_sync_on_step_args,
    "pseudo_gradient_": pseudo_gradient_args,
    "compact_momentum_sync_": compact_momentum_sync_args,
    "compact_momentum_sync_on_step_": compact_momentum_sync_on_step_args,
    "adamw_delta_step_": adamw_delta_step_args,
    "compact_int8_momentum_sync_": compact_int8_momentum_sync_args,
    "compact_int8_momentum_sync_on_step_": compact_int8_momentum_sync_on_step_args,
    "adamw_compact_step_": adamw_compact_step_args,
    "adamw_int8_momentum_step_": adamw_int8_momentum_step_args,
}
# registered op name -> (the backend that registers it: "native" (the C++ extension) or "triton", its argument sets)
OPS = {name: ("native", ARGUMENT_SETS[name]) for name in OP_NAMES} | {
    f"triton_{name}": ("triton", ARGUMENT_SETS[name]) for name in OP_NAMES
}
GPU = torch.cuda.is_available()
# (op, device, the backend name that must be available): the native ops on the CPU and, with a GPU,
# on CUDA; the Triton ops on the GPU, or without one in the interpreter on the CPU
CASES = [
    (op, device, needs)
    for op, (registrar, _) in OPS.items()
    for device, needs in (
        [("cpu", "cpu")] + ([("cuda", "cuda")] if GPU else []) if registrar == "native" else [("cuda" if GPU else "cpu", "triton")]
    )
]


def _on(device, args):
    return tuple([t.to(device) for t in a] if isinstance(a, list) else a.to(device) if isinstance(a, torch.Tensor) else a for a in args)


@pytest.mark.parametrize("op,device,needs", CASES, ids=[f"{op}-{device}" for op, device, _ in CASES])
def test_opcheck(op, device, needs):
    if needs not in available_backends():
        pytest.skip(f"the {needs!r} backend, which {op} on {device} needs, is unavailable")
    if needs == "triton":
        import lookahead_fused.backends.triton  # noqa: F401  (registers the triton_* ops)
    for args in OPS[op][1]():
        torch.library.opcheck(getattr(torch.ops.lookahead_fused, op).default, _on(device, args))


def test_every_registered_op_is_checked():
    """Every op in the lookahead_fused namespace is one of the op list's, natively or as Triton's, and has
    its argument sets here."""
    assert set(ARGUMENT_SETS) == set(OP_NAMES)
    if not {"cpu", "triton"} <= set(available_backends()):
        pytest.skip("needs both the C++ extension and the Triton backend to see every op")
    import lookahead_fused.backends.triton  # noqa: F401

    registered = {name.split("::")[1] for name in torch._C._dispatch_get_all_op_names() if name.startswith("lookahead_fused::")}
    assert registered == set(OPS)
