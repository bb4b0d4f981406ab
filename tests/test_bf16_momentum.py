"""Lookahead(momentum_dtype=torch.bfloat16): the outer momentum in 2 bytes beside float32 slow weights
(see [NOTE: bf16 outer momentum] in lookahead_fused/options.py). Each sync's momentum against the float64
momentum sync of the same pre-sync values (within 1 % of the tensor's max |m|, and the rounding's
2^-8 per element), the bytes counted, every backend and the gated path alike, checkpoints (mid-period
bit for bit; an exact one converts with one warning, and back), LookaheadAdamW's fused pass, and what
is refused."""

import copy

import pytest
import torch

from lookahead_fused import Lookahead, LookaheadAdamW, ops
from lookahead_fused.backends.reference import momentum_sync_float64
from lookahead_fused.slow_state import OUTER_MOMENTUM, SLOW_PARAM

from .helpers import assert_bitwise_equal, make_params, run, set_grads, snapshot
from .matrix import check_momentum_against_contract

SHAPES = ((3, 4), (3,), (5,))
OPTIONS = {"k": 3, "alpha": 0.7, "outer_momentum": 0.9, "nesterov": True}


def sgd(params):
    return torch.optim.SGD(params, lr=0.05, momentum=0.9)


def build(params, **options):
    return Lookahead(sgd(params), **{**OPTIONS, "momentum_dtype": torch.bfloat16, **options})


def test_each_sync_keeps_the_momentum_within_its_bound(backend):
    """At every sync: the stored bfloat16 momentum is the float64 momentum of the pre-sync values
    within 2^-8 of its own magnitude plus float32 rounding, so within 1 % of the tensor's max |m|."""
    params = make_params(dtype=torch.float32, shapes=SHAPES)
    opt = build(params, backend=backend)
    before = {}
    opt.optimizer.register_step_post_hook(
        lambda *_: before.update({id(p): (snapshot([p, opt.state[p][SLOW_PARAM], opt.state[p][OUTER_MOMENTUM]]))
                                  for p in params})
    )  # fmt: skip
    syncs = 0
    for step in range(12):
        set_grads(params, step)
        opt.step()
        if (step + 1) % OPTIONS["k"]:
            continue
        syncs += 1
        for p in params:
            f0, s0, m0 = before[id(p)]
            assert m0.dtype == torch.bfloat16
            expected_slow, expected_m = momentum_sync_float64(f0, s0, m0, OPTIONS["alpha"], 0.9, True)
            m = opt.state[p][OUTER_MOMENTUM].double()
            error = (m - expected_m).abs()
            assert (error <= expected_m.abs() * 2.0**-8 + 1e-6 * expected_m.abs().max()).all()
            assert error.max() <= 0.01 * expected_m.abs().max()
            slow = opt.state[p][SLOW_PARAM].double()
            assert ((slow - expected_slow).abs() <= 0.7 * 0.9 * expected_m.abs() * 2.0**-8 + 1e-5).all()
            assert torch.equal(p.detach(), opt.state[p][SLOW_PARAM])
    assert syncs == 4


def test_the_outer_momentum_takes_two_bytes_per_weight():
    params = make_params(dtype=torch.float32, shapes=SHAPES)
    opt = build(params)
    for p in params:
        state = opt.state[p]
        assert state[SLOW_PARAM].dtype == torch.float32 and state[OUTER_MOMENTUM].dtype == torch.bfloat16
        assert state[OUTER_MOMENTUM].untyped_storage().nbytes() == 2 * p.numel()
    bf16_params = make_params(dtype=torch.bfloat16, shapes=SHAPES)
    opt = build(bf16_params, slow_dtype=torch.float32)
    assert all(opt.state[p][OUTER_MOMENTUM].dtype == torch.bfloat16 for p in bf16_params)


def test_the_gated_path_is_the_host_decided_one_bit_for_bit_and_follows_the_reference(backend):
    """capturable=True (the sync gated on the device) runs the same kernel as the host-decided sync:
    bit for bit the same trajectory; each backend follows the reference backend's within float32
    rounding (the C++ kernels may contract a multiply-add that torch rounds twice)."""
    runs = []
    for options in ({"backend": "reference"}, {"backend": backend}, {"backend": backend, "capturable": True}):
        params = make_params(dtype=torch.float32, shapes=SHAPES)
        run(build(params, **options), params, 10)
        runs.append(params)
    assert_bitwise_equal(runs[2], runs[1])
    for ours, reference in zip(runs[1], runs[0]):
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


def test_checkpoint_mid_period_resumes_bit_for_bit():
    params = make_params(dtype=torch.float32, shapes=SHAPES)
    opt = build(params)
    run(opt, params, 7)
    saved = copy.deepcopy(opt.state_dict())
    assert saved["lookahead"]["momentum_dtype"] == "bfloat16"
    resumed_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    resumed = build(resumed_params)
    resumed.load_state_dict(saved)
    run(opt, params, 5, first_step=7)
    run(resumed, resumed_params, 5, first_step=7)
    assert_bitwise_equal(resumed_params, params)
    assert_bitwise_equal([resumed.state[p][OUTER_MOMENTUM] for p in resumed_params],
                         [opt.state[p][OUTER_MOMENTUM] for p in params])  # fmt: skip


@pytest.mark.parametrize("saved_dtype,loading_dtype", [(None, torch.bfloat16), (torch.bfloat16, None)])
def test_a_checkpoint_of_the_other_momentum_dtype_converts_with_one_warning(saved_dtype, loading_dtype):
    params = make_params(dtype=torch.float32, shapes=SHAPES)
    opt = build(params, momentum_dtype=saved_dtype)
    run(opt, params, 4)
    saved = opt.state_dict()
    loading = build([torch.nn.Parameter(p.detach().clone()) for p in params], momentum_dtype=loading_dtype)
    with pytest.warns(UserWarning, match="momentum_dtype") as caught:
        loading.load_state_dict(saved)
    assert len([w for w in caught if "momentum_dtype" in str(w.message)]) == 1
    for p, q in zip(params, loading.param_groups[0]["params"]):
        converted = loading.state[q][OUTER_MOMENTUM]
        assert converted.dtype == (loading_dtype or torch.float32)
        assert torch.equal(converted, opt.state[p][OUTER_MOMENTUM].to(converted.dtype))


def test_a_param_made_float16_after_it_joined_keeps_syncing_after_a_load():
    """The slow weights of a param cast to float16 after it joined load as float16, and its outer
    momentum, which no kernel keeps in bfloat16 beside float16 slow weights, then follows them."""
    model = torch.nn.Linear(4, 3)
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), k=2, alpha=0.5, outer_momentum=0.9,
                    momentum_dtype=torch.bfloat16)  # fmt: skip
    model.half()
    x = torch.randn(2, 4).half()
    for _ in range(6):
        if _ == 3:
            opt.load_state_dict(opt.state_dict())
        model(x).float().sum().backward()
        opt.step()
        opt.zero_grad()
    for p in model.parameters():
        assert opt.state[p][SLOW_PARAM].dtype == torch.float16 == opt.state[p][OUTER_MOMENTUM].dtype
        assert torch.equal(p.detach(), opt.state[p][SLOW_PARAM])


@pytest.mark.parametrize(
    "options,message",
    [
        ({"momentum_dtype": torch.float16}, r"momentum_dtype must be None \(the slow weights' dtype\), torch.bfloat16 or 'int8'"),
        ({"momentum_dtype": "bf16"}, r"momentum_dtype must be None .* or 'int8' .*, got 'bf16'"),
        ({"outer_momentum": 0.0, "nesterov": False}, "momentum_dtype=torch.bfloat16 needs outer_momentum > 0"),
    ],
)
def test_refused_options(options, message):
    params = make_params(dtype=torch.float32, shapes=SHAPES)
    with pytest.raises(ValueError, match=message):
        build(params, **options)


@pytest.mark.parametrize("dtype,slow", [(torch.float64, "torch.float64"), (torch.float16, "torch.float16")])
def test_params_whose_slow_weights_are_not_float32_or_bfloat16_are_refused(dtype, slow):
    params = make_params(dtype=dtype, shapes=SHAPES)
    before = snapshot(params)
    with pytest.raises(ValueError, match=f"param group 0: param 0: its slow weights are {slow}; momentum_dtype"):
        build(params)
    assert_bitwise_equal(params, before)


def test_lookahead_adamw_keeps_it_in_its_fused_pass(backend):
    """LookaheadAdamW(momentum_dtype=torch.bfloat16): the momentum in bfloat16, the same trajectory on
    the host-decided and the gated path bit for bit, and Lookahead(AdamW)'s with the same options within
    float32 rounding (the fused AdamW rounds like torch's to a few ulp, and the bfloat16 rounding of m
    passes such a difference on as at most one bfloat16 ulp of m)."""
    runs = []
    for options in ({"backend": backend}, {"backend": backend, "capturable": True}):
        params = make_params(dtype=torch.float32, shapes=SHAPES)
        opt = LookaheadAdamW(params, lr=0.05, weight_decay=0.01, **OPTIONS, momentum_dtype=torch.bfloat16, **options)
        run(opt, params, 10)
        assert all(opt.state[p][OUTER_MOMENTUM].dtype == torch.bfloat16 for p in params)
        runs.append(params)
    assert_bitwise_equal(runs[1], runs[0])
    composed_params = make_params(dtype=torch.float32, shapes=SHAPES)
    composed = Lookahead(torch.optim.AdamW(composed_params, lr=0.05, weight_decay=0.01), **OPTIONS,
                         momentum_dtype=torch.bfloat16, backend=backend)  # fmt: skip
    run(composed, composed_params, 10)
    for ours, theirs in zip(runs[0], composed_params):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_the_adamw_op_takes_a_bf16_momentum_as_the_momentum_sync_does(backend):
    """lookahead_adamw_step_ on a sync row with a bfloat16 momentum: AdamW's step, then the momentum
    sync of the new param, within the op contract's bounds of its float64 evaluation (the new param
    taken from the same step run alone, a sync flag of 0)."""
    g = torch.Generator().manual_seed(3)
    sizes = [1, 7, 4097]
    params, grads = [torch.randn(n, generator=g) for n in sizes], [torch.randn(n, generator=g) for n in sizes]
    slow = [p + 0.01 * torch.randn(p.shape, generator=g) for p in params]
    momentum = [(0.1 * torch.randn(n, generator=g)).to(torch.bfloat16) for n in sizes]
    moments = [[torch.zeros(n) for n in sizes] for _ in range(2)]
    row = [1e-3, 0.9, 0.999, 1e-8, 0.0, 1.0, 0.7, 1.0, 0.0]  # lr, betas, eps, weight decay, step, alpha, sync, maximize
    rows = torch.zeros(len(sizes), dtype=torch.int64)
    stepped = snapshot(params)
    no_sync = torch.tensor([row[:7] + [0.0, 0.0]], dtype=torch.float64)
    ops.lookahead_adamw_step_(stepped, grads, *map(snapshot, moments), snapshot(slow), no_sync, rows, backend="reference")
    before = snapshot(slow), snapshot(momentum)
    ops.lookahead_adamw_step_(params, grads, *moments, slow, torch.tensor([row], dtype=torch.float64), rows,
                              momentum=momentum, mu=0.9, nesterov=True, backend=backend)  # fmt: skip
    assert all(m.dtype == torch.bfloat16 for m in momentum)
    check_momentum_against_contract(stepped, *before, params, slow, momentum, 0.7, 0.9, True)
