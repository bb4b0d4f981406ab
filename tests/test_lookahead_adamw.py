"""LookaheadAdamW and its op, lookahead_adamw_step_: the op against a float64 evaluation of its math
(csrc/adamw.h) on every backend and dtype pair, the optimizer against Lookahead(torch.optim.AdamW)
(float64 trajectories to 1e-10), checkpoints both ways, GradScaler, capturable, bad input."""

import copy

import pytest
import torch

from lookahead_fused import Lookahead, LookaheadAdamW, ops
from lookahead_fused import sync as sync_module
from lookahead_fused.backends.reference import momentum_sync_float64, sync_float64
from lookahead_fused.contract import ADAMW_COLUMNS

from .matrix import DTYPE_PAIRS, dtype_id, make_pair_lists, ulp

SIZES = [1, 7, 4097, 65537 + 13]
ROW = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, step=3.0, alpha=0.5, sync=0.0, maximize=0.0)


def hyper_of(device="cpu", **changes):
    row = dict(ROW, **changes)
    return torch.tensor([[row[c] for c in ADAMW_COLUMNS]], dtype=torch.float64, device=device)


def _gradient_like(n, dtype, device, offset, generator):
    """Values over three decades (their squares stay finite in float16), `offset` elements into a buffer."""
    values = torch.randn(n, generator=generator, dtype=torch.float64) * 10.0 ** torch.empty(n, dtype=torch.float64).uniform_(-2, 1, generator=generator)
    return torch.empty(n + offset, dtype=dtype, device=device)[offset:].copy_(values)


def adamw_lists(dtype, slow_dtype, device, offset=0, seed=0, sizes=SIZES):
    """params and slow weights over six decades (matrix.make_pair_lists), grads and moments over three,
    second moments >= 0.01 (a float16 one that underflowed to 0 would make the update overflow)."""
    params, slow = make_pair_lists(sizes, dtype, slow_dtype, seed=seed, offset=offset, device=device)
    g = torch.Generator().manual_seed(seed + 1)
    grads, exp_avgs = ([_gradient_like(n, dtype, device, offset, g) for n in sizes] for _ in range(2))
    exp_avg_sqs = [(_gradient_like(n, dtype, device, offset, g).abs() + 0.1) ** 2 for n in sizes]  # no float16 underflow
    momentum = [_gradient_like(n, slow_dtype, device, offset, g) for n in sizes]
    return params, grads, exp_avgs, exp_avg_sqs, slow, momentum


def adamw_float64(p, g, m, v, row, stored_m, stored_v):
    """(new exp_avg, new exp_avg_sq, new param, the update's size) in float64. The param's update
    reads the moments as the kernel stored them (`stored_m`, `stored_v`), as csrc/adamw.h does, so
    the moments' own rounding (checked on its own) does not enter the param's bound."""
    lr, beta1, beta2, eps, weight_decay, step, _, _, maximize = row  # torch.optim.AdamW's math, written out
    g64 = g.double() * (-1.0 if maximize else 1.0)
    m_new = m.double() + (1 - beta1) * (g64 - m.double())
    v_new = beta2 * v.double() + (1 - beta2) * g64 * g64
    bias_correction1, bias_correction2 = 1 - beta1**step, 1 - beta2**step
    update = lr / bias_correction1 * stored_m.double() / (stored_v.double().sqrt() / bias_correction2**0.5 + eps)
    return m_new, v_new, p.double() * (1 - lr * weight_decay) - update, update.abs()


def bounded(actual, expected, bound, what):
    error = (actual.double().cpu() - expected).abs()
    worst = (error / bound).max().item() if error.numel() else 0.0
    assert worst <= 1.0, f"{what}: error reaches {worst:.2f} x its bound"


def within(actual, expected, magnitude, ulps, dtype, what):
    bounded(actual, expected, ulps * ulp(magnitude, dtype), f"{what} ({ulps} ulp)")


@pytest.mark.parametrize("fast_dtype,slow_dtype", DTYPE_PAIRS, ids=[f"{dtype_id(f)}-{dtype_id(s)}" for f, s in DTYPE_PAIRS])
@pytest.mark.parametrize("sync,mu,nesterov,maximize", [(0, 0.0, False, 0), (1, 0.0, False, 1), (1, 0.9, True, 0), (0, 0.5, False, 0)])
@pytest.mark.parametrize("offset", [0, 1])
def test_op_against_float64(device_backend, fast_dtype, slow_dtype, sync, mu, nesterov, maximize, offset):
    device, backend = device_backend
    lists = adamw_lists(fast_dtype, slow_dtype, device, offset)
    before = [[t.cpu().clone() for t in tensors] for tensors in lists]
    row = dict(ROW, sync=float(sync), maximize=float(maximize))
    hyper = hyper_of(device, sync=float(sync), maximize=float(maximize))
    rows = torch.zeros(len(SIZES), dtype=torch.int64, device=device)
    ops.lookahead_adamw_step_(*lists[:5], hyper, rows, momentum=lists[5] if mu else None, mu=mu, nesterov=nesterov,
                              backend=backend)  # fmt: skip
    params, grads, exp_avgs, exp_avg_sqs, slow, momentum = ([t.cpu() for t in tensors] for tensors in lists)
    p0, g0, m0, v0, s0, b0 = before
    for i in range(len(SIZES)):
        p_new, update_scale = check_adamw_moments(i, [t[i] for t in before[:4]], exp_avgs[i], exp_avg_sqs[i], grads[i],
                                                  row, fast_dtype)  # fmt: skip
        if not sync:
            within(params[i], p_new, update_scale, 8, fast_dtype, f"param {i}: param")
            assert torch.equal(slow[i], s0[i]) and torch.equal(momentum[i], b0[i]), f"param {i}: state moved off a sync"
            continue
        assert torch.equal(params[i], slow[i].to(fast_dtype)), f"param {i}: param != slow after the sync"
        # the sync reads the param as the kernel rounded it: within the param's bound above of this
        fast = p_new.to(fast_dtype).double()
        fast_error = 8 * ulp(update_scale, fast_dtype)
        if mu:
            expected, expected_m = momentum_sync_float64(fast, s0[i], b0[i], row["alpha"], mu, nesterov)
            scale = torch.stack([t.double().abs() for t in (fast, s0[i], b0[i], expected_m)]).amax(0)
            bounded(momentum[i], expected_m, fast_error + 4 * ulp(scale, slow_dtype), f"param {i}: momentum")
        else:
            expected = sync_float64(fast, s0[i], row["alpha"])
            scale = torch.maximum(fast.abs(), s0[i].double().abs())
        bounded(slow[i], expected, (1 + mu) * fast_error + 8 * ulp(scale, slow_dtype), f"param {i}: slow")


def check_adamw_moments(i, before, exp_avg, exp_avg_sq, grad, row, fast_dtype):
    """Param i's moments against float64 and its grad unchanged; returns (its new param in float64,
    the scale of its bound: opmath rounding in the update, a square root, two divisions, a product,
    a few ulp of its size, and in the decayed param, then one rounding to the param's dtype)."""
    p0, g0, m0, v0 = before
    assert torch.equal(grad, g0), f"param {i}: the grad changed"
    m_new, v_new, p_new, update = adamw_float64(p0, g0, m0, v0, [row[c] for c in ADAMW_COLUMNS], exp_avg, exp_avg_sq)
    g_abs = g0.double().abs()
    within(exp_avg, m_new, torch.maximum(m0.double().abs(), g_abs), 2, fast_dtype, f"param {i}: exp_avg")
    within(exp_avg_sq, v_new, torch.maximum(v0.double(), g_abs * g_abs), 4, fast_dtype, f"param {i}: exp_avg_sq")
    return p_new, torch.maximum(p0.double().abs(), update)


@pytest.mark.parametrize("fast_dtype", list(dict.fromkeys(f for f, _ in DTYPE_PAIRS)), ids=dtype_id)
@pytest.mark.parametrize("offset", [0, 1])
def test_the_step_alone_without_slow_weights_against_float64(device_backend, fast_dtype, offset):
    """An empty slow list: AdamW's step alone (LookaheadAdamW's pass when its sync runs apart), the
    moments and the param against float64 as with slow weights off a sync step."""
    device, backend = device_backend
    params, grads, exp_avgs, exp_avg_sqs, _, _ = adamw_lists(fast_dtype, fast_dtype, device, offset)
    before = [[t.cpu().clone() for t in tensors] for tensors in (params, grads, exp_avgs, exp_avg_sqs)]
    rows = torch.zeros(len(SIZES), dtype=torch.int64, device=device)
    ops.lookahead_adamw_step_(params, grads, exp_avgs, exp_avg_sqs, [], hyper_of(device), rows, backend=backend)
    for i in range(len(SIZES)):
        p_new, update_scale = check_adamw_moments(i, [t[i] for t in before], exp_avgs[i].cpu(), exp_avg_sqs[i].cpu(),
                                                  grads[i].cpu(), ROW, fast_dtype)  # fmt: skip
        within(params[i].cpu(), p_new, update_scale, 8, fast_dtype, f"param {i}: param")


def test_op_rejects_bad_input_before_writing(backend):
    lists = adamw_lists(torch.float32, torch.float32, "cpu")
    held = [[t.clone() for t in tensors] for tensors in lists]
    rows = torch.zeros(len(SIZES), dtype=torch.int64)
    cases = [
        (hyper_of(lr=-1.0), rows, "out of range"),
        (hyper_of(sync=0.5), rows, "out of range"),
        (hyper_of()[:, :5].contiguous(), rows, "hyper must be"),
        (hyper_of(), rows + 1, "row"),
        (hyper_of(), rows[:2], "rows must be"),
    ]
    for hyper, bad_rows, message in cases:
        if backend not in ("cpu",) and message == "out of range":
            continue  # the Python backends trust the values their caller (LookaheadAdamW) wrote
        with pytest.raises(ValueError, match=message):
            ops.lookahead_adamw_step_(*lists[:5], hyper, bad_rows, backend=backend)
    wrong_grads = [g.double() for g in lists[1]]
    with pytest.raises(ValueError, match="grad"):
        ops.lookahead_adamw_step_(lists[0], wrong_grads, *lists[2:5], hyper_of(), rows, backend=backend)
    # without slow weights: no outer momentum, and no row may ask for a sync
    with pytest.raises(ValueError, match="momentum has 4 tensors but slow has none"):
        ops.lookahead_adamw_step_(*lists[:4], [], hyper_of(), rows, momentum=lists[5], mu=0.5, backend=backend)
    with pytest.raises(ValueError, match="hyper row 0 has sync = 1 but the call has no slow weights"):
        ops.lookahead_adamw_step_(*lists[:4], [], hyper_of(sync=1.0), rows, backend=backend)
    for tensors, kept in zip(lists, held):
        for t, k in zip(tensors, kept):
            assert torch.equal(t, k)


def _with(lists, index, i, tensor):
    changed = [list(tensors) for tensors in lists]
    changed[index][i] = tensor
    return changed


def _without_last(lists, index):
    return [list(tensors[:-1]) if j == index else list(tensors) for j, tensors in enumerate(lists)]


# Calls with one or two defects: (params, grads, exp_avgs, exp_avg_sqs, slow, momentum) from adamw_lists -> the
# changed lists and mu. Two defects: the first the C++ check meets must be the one every backend names.
ADAMW_DEFECTS = {
    "a moment's dtype and a slow weight's": lambda l: (_with(_with(l, 2, 0, l[2][0].double()), 4, 1, l[4][1].half()), 0.5),
    "a slow weight's dtype": lambda l: (_with(l, 4, 1, l[4][1].half()), 0.5),
    "a slow weight's shape": lambda l: (_with(l, 4, 1, torch.zeros(5)), 0.5),
    "a slow weight missing": lambda l: (_without_last(l, 4), 0.5),
    "a grad missing and a slow weight's dtype": lambda l: (_with(_without_last(l, 1), 4, 1, l[4][1].half()), 0.5),
    "a momentum's dtype": lambda l: (_with(l, 5, 1, l[5][1].half()), 0.5),
    "a momentum missing and a moment's dtype": lambda l: (_with(_without_last(l, 5), 2, 0, l[2][0].double()), 0.5),
    "mu without the momentum": lambda l: ([*l[:5], []], 0.5),
    "a grad's dtype and a slow weight missing": lambda l: (_with(_without_last(l, 4), 1, 0, l[1][0].half()), 0.5),
}  # fmt: skip


@pytest.mark.parametrize("defect", ADAMW_DEFECTS)
def test_every_backend_refuses_as_the_native_check_does(backend, defect):
    """The Python backends' check (contract.check_adamw_args) says what the C++ one says, word for word,
    and meets the defects in its order; nothing is written."""
    if "cpu" not in ops.available_backends():
        pytest.skip("the native check is the C++ extension's")
    messages = {}
    for name in dict.fromkeys(["cpu", backend]):
        lists = adamw_lists(torch.float32, torch.float32, "cpu", sizes=SIZES[:2])
        changed, mu = ADAMW_DEFECTS[defect](lists)
        held = [[t.clone() for t in tensors] for tensors in changed]
        rows = torch.zeros(len(changed[0]), dtype=torch.int64)
        with pytest.raises(ValueError) as refused:
            ops.lookahead_adamw_step_(*changed[:5], hyper_of(), rows, momentum=changed[5], mu=mu, backend=name)
        messages[name] = str(refused.value)
        for tensors, kept in zip(changed, held):
            assert all(torch.equal(t, k) for t, k in zip(tensors, kept)), f"{name}: a tensor was written"
    assert messages[backend] == messages["cpu"]


def _model(dtype, seed=1):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(7, 13), torch.nn.Tanh(), torch.nn.Linear(13, 3)).to(dtype)


def _groups(model, per_group_alpha):
    first, second = list(model[0].parameters()), list(model[2].parameters())
    extra = {"lookahead_alpha": 0.8} if per_group_alpha else {}
    return [{"params": first}, {"params": second, "weight_decay": 0.0, "lr": 3e-3, **extra}]


def _train(model, opt, steps, seed=2, scheduler=None, drop_grad_at=()):
    g = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    for t in range(steps):
        x = torch.randn(16, 7, generator=g, dtype=torch.float64).to(dtype)
        y = torch.randn(16, 3, generator=g, dtype=torch.float64).to(dtype)
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        if t in drop_grad_at:
            model[2].bias.grad = None  # no AdamW step for it (as in torch), but it is synced
        opt.step()
        if scheduler is not None:
            scheduler.step()


OPTIONS = [
    {},
    {"outer_momentum": 0.9, "nesterov": True},
    {"pullback_momentum": "pullback"},
    {"pullback_momentum": "reset", "maximize": True},
    {"capturable": True, "outer_momentum": 0.5},
    {"capturable": True, "pullback_momentum": "pullback"},
    {"capturable": True, "pullback_momentum": "reset"},
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "plain")
def test_float64_trajectory_matches_lookahead_of_adamw(backend, options):
    options = dict(options)
    maximize = options.pop("maximize", False)
    capturable = options.pop("capturable", False)
    a, b = _model(torch.float64), _model(torch.float64)
    reference = Lookahead(torch.optim.AdamW(_groups(a, True), lr=1e-2, weight_decay=0.1, maximize=maximize), k=3, alpha=0.5, **options)
    fused = LookaheadAdamW(_groups(b, True), lr=1e-2, weight_decay=0.1, maximize=maximize, k=3, alpha=0.5,
                           capturable=capturable, backend=backend, **options)  # fmt: skip
    schedulers = [torch.optim.lr_scheduler.StepLR(o, step_size=4, gamma=0.5) for o in (reference, fused)]
    drop = () if capturable else (4, 5, 6, 11)
    _train(a, reference, 25, scheduler=schedulers[0], drop_grad_at=drop)
    _train(b, fused, 25, scheduler=schedulers[1], drop_grad_at=drop)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-10, atol=1e-14)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(fused.state[q]["slow_param"], reference.state[p]["slow_param"], rtol=1e-10, atol=1e-14)
        for key in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(fused.optimizer.state[q][key].cpu().double(),
                                       reference.optimizer.state[p][key].cpu().double(), rtol=1e-10, atol=1e-14)  # fmt: skip


def test_one_fused_launch_per_step(monkeypatch):
    model = _model(torch.float32)
    opt = LookaheadAdamW(model.parameters(), k=2)
    calls = {"adamw": 0, "sync": 0}
    real_adamw, real_sync = ops.lookahead_adamw_step_, sync_module.run_fused
    monkeypatch.setattr(ops, "lookahead_adamw_step_", lambda *a, **k: (calls.__setitem__("adamw", calls["adamw"] + 1), real_adamw(*a, **k)))
    monkeypatch.setattr(sync_module, "run_fused", lambda *a, **k: (calls.__setitem__("sync", calls["sync"] + 1), real_sync(*a, **k)))
    _train(model, opt, 4)
    assert calls == {"adamw": 4, "sync": 0}


def test_capturable_on_the_cpu_syncs_the_pullback_momenta_on_the_sync_steps_only(monkeypatch):
    real = ops.lookahead_sync_on_step_
    counters_at_call = []
    monkeypatch.setattr(ops, "lookahead_sync_on_step_", lambda *a, **kw: (counters_at_call.append(int(a[3])), real(*a, **kw)))
    model = _model(torch.float32)
    _train(model, LookaheadAdamW(model.parameters(), k=3, pullback_momentum="pullback", capturable=True), 7)
    assert counters_at_call == [3, 6]


@pytest.mark.parametrize("source_is_fused", [True, False])
def test_checkpoint_moves_between_lookahead_adamw_and_lookahead_of_adamw(source_is_fused):
    def build(model, fused):
        if fused:
            return LookaheadAdamW(_groups(model, True), lr=1e-2, k=3, alpha=0.5, outer_momentum=0.5)
        return Lookahead(torch.optim.AdamW(_groups(model, True), lr=1e-2), k=3, alpha=0.5, outer_momentum=0.5)

    source_model = _model(torch.float64)
    source = build(source_model, source_is_fused)
    _train(source_model, source, 7)  # mid-period: 7 % 3 != 0
    target_model = copy.deepcopy(source_model)
    target = build(target_model, not source_is_fused)
    target.load_state_dict(copy.deepcopy(source.state_dict()))
    _train(source_model, source, 8, seed=5)
    _train(target_model, target, 8, seed=5)
    for p, q in zip(source_model.parameters(), target_model.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("dtype,slow_dtype", [(torch.float32, None), (torch.bfloat16, torch.float32)])
def test_mid_period_resume_is_bitwise(dtype, slow_dtype):
    model = _model(dtype)
    opt = LookaheadAdamW(model.parameters(), lr=1e-2, k=4, slow_dtype=slow_dtype, outer_momentum=0.9, nesterov=True)
    _train(model, opt, 6)
    resumed_model = copy.deepcopy(model)
    resumed = LookaheadAdamW(resumed_model.parameters(), lr=1e-2, k=4, slow_dtype=slow_dtype, outer_momentum=0.9, nesterov=True)
    resumed.load_state_dict(copy.deepcopy(opt.state_dict()))
    _train(model, opt, 7, seed=9)
    _train(resumed_model, resumed, 7, seed=9)
    for p, q in zip(model.parameters(), resumed_model.parameters()):
        assert torch.equal(p, q)


def test_grad_scaler_skipped_step_changes_nothing_and_does_not_count():
    model = _model(torch.float32)
    opt = LookaheadAdamW(model.parameters(), lr=1e-2, k=2)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4)
    _train(model, opt, 1)
    held = [p.detach().clone() for p in model.parameters()]
    loss = model(torch.randn(4, 7)).sum()
    scaler.scale(loss).backward()
    next(model.parameters()).grad[0, 0] = float("inf")
    scaler.step(opt)
    scaler.update()
    assert opt.step_count == 1
    assert all(torch.equal(p, h) for p, h in zip(model.parameters(), held))
    assert all(opt.optimizer.state[p]["step"].item() == 1 for p in model.parameters())


def test_refusals():
    params = list(_model(torch.float32).parameters())
    with pytest.raises(ValueError, match="amsgrad"):
        LookaheadAdamW(params, amsgrad=True)
    with pytest.raises(ValueError, match="adaptive"):
        LookaheadAdamW(params, alpha="adaptive")
    with pytest.raises(ValueError, match="learning rate"):
        LookaheadAdamW(params, lr=-1.0)  # torch.optim.AdamW's own check
    opt = LookaheadAdamW(params, capturable=True)
    for p in params:
        p.grad = torch.zeros_like(p)
    params[1].grad = None
    held = [p.detach().clone() for p in params]
    with pytest.raises(ValueError, match="param group 0: param 1 has no grad"):
        opt.step()
    assert opt.step_count == 0 and all(torch.equal(p, h) for p, h in zip(params, held))


def test_add_param_group_and_state_keys():
    model = _model(torch.float32)
    opt = LookaheadAdamW(model[0].parameters(), lr=1e-2, k=2)
    opt.add_param_group({"params": list(model[2].parameters()), "lr": 1e-3})
    _train(model, opt, 3)
    inner = opt.state_dict()["state"]
    assert len(inner) == 4 and all({"step", "exp_avg", "exp_avg_sq", "lookahead_slow_param"} <= set(s) for s in inner.values())
    assert opt.param_groups[1]["lr"] == 1e-3 and opt.step_count == 3


@pytest.mark.parametrize("options", [{"outer_momentum": 0.5}, {"slow_dtype": "int8-delta"}], ids=["outer", "int8-delta"])
def test_a_compiled_training_step_follows_eager_and_never_recompiles(options):
    import torch._dynamo

    models = _model(torch.float32), _model(torch.float32)
    opts = [LookaheadAdamW(m.parameters(), lr=1e-2, k=3, **options) for m in models]
    x, y = torch.randn(16, 7), torch.randn(16, 3)

    def train_step(model, opt):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()

    compiled = torch.compile(train_step)
    torch._dynamo.reset()
    try:
        for step in range(1, 10):
            train_step(models[0], opts[0])
            with torch._dynamo.config.patch(error_on_recompile=step > 2):
                compiled(models[1], opts[1])
            for p, q in zip(models[0].parameters(), models[1].parameters()):
                torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)
    finally:
        torch._dynamo.reset()
    assert opts[1].step_count == 9


def test_python_and_cpp_agree_on_the_hyper_table_columns():
    _C = pytest.importorskip("lookahead_fused._C", reason="the C++ extension is not built")
    assert tuple(_C.build_info()["adamw_columns"]) == ADAMW_COLUMNS


def test_capturable_tensor_lr_follows_its_scheduler_without_rebuilding_the_device_table():
    """A tensor lr is copied on the device each step, never read on the host (a captured graph could
    not), so a scheduler driving it changes no host-known column and the table stays the same."""
    a, b = _model(torch.float64), _model(torch.float64)
    reference = Lookahead(torch.optim.AdamW(a.parameters(), lr=torch.tensor(1e-2, dtype=torch.float64)), k=3)
    fused = LookaheadAdamW(b.parameters(), lr=torch.tensor(1e-2, dtype=torch.float64), k=3, capturable=True)
    schedulers = [torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5) for o in (reference, fused)]
    _train(a, reference, 1, scheduler=schedulers[0])
    _train(b, fused, 1, scheduler=schedulers[1])
    table = fused._device_table_held[1]
    _train(a, reference, 9, seed=3, scheduler=schedulers[0])
    _train(b, fused, 9, seed=3, scheduler=schedulers[1])
    assert fused._device_table_held[1] is table
    assert float(fused.param_groups[0]["lr"]) == 1e-2 * 0.5**5
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-10, atol=1e-14)
