"""What each process of tests/test_distributed.py runs (gloo, on the CPU). Each worker writes what
the test checks to `out_dir` from rank 0; ranks compare themselves with each other in here."""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist

from lookahead_fused import Lookahead, LookaheadAdamW, bf16_int8, ops
from lookahead_fused.slow_state import slow_keys, slow_weight_value

K = 3
GLOBAL_BATCH = 8
COMPACT = "lookahead_bf16+int8"
COMPACT_MOMENTUM = "lookahead_bf16+int8_bf16_momentum"
INT8_MOMENTUM = "lookahead_int8_momentum"
ADAMW_INT8_MOMENTUM = "lookahead_adamw_int8_momentum"
ADAMW_INT8_DELTA = "lookahead_adamw_int8_delta"
ADAMW_INT8_DELTA_MOMENTUM = "lookahead_adamw_int8_delta_int8_momentum"
ADAMW_INT8_DELTA_BF16_MOMENTUM = "lookahead_adamw_int8_delta_bf16_momentum"
COMPACT_INT8_MOMENTUM = "lookahead_bf16+int8_int8_momentum"
ADAMW_COMPACT_MOMENTUM = "lookahead_adamw_bf16+int8_bf16_momentum"
ADAMW_COMPACT_INT8_MOMENTUM = "lookahead_adamw_bf16+int8_int8_momentum"
# the kinds that keep int8 blocks
INT8_KINDS = (INT8_MOMENTUM, ADAMW_INT8_MOMENTUM, ADAMW_INT8_DELTA, ADAMW_INT8_DELTA_MOMENTUM,
              ADAMW_INT8_DELTA_BF16_MOMENTUM, COMPACT_INT8_MOMENTUM, ADAMW_COMPACT_INT8_MOMENTUM)  # fmt: skip
# LookaheadAdamW's int8-delta kinds, and the outer momentum each keeps beside the offsets
INT8_DELTA_OUTER = {
    ADAMW_INT8_DELTA: {},
    ADAMW_INT8_DELTA_MOMENTUM: {"outer_momentum": 0.5, "nesterov": True, "momentum_dtype": "int8"},
    ADAMW_INT8_DELTA_BF16_MOMENTUM: {"outer_momentum": 0.5, "nesterov": True, "momentum_dtype": torch.bfloat16},
}
KINDS = ["lookahead", "lookahead_adamw", COMPACT, COMPACT_MOMENTUM, ADAMW_COMPACT_MOMENTUM, *INT8_KINDS]


def model_dtype(kind="lookahead") -> torch.dtype:
    """float64, except for compact slow weights and int8 blocks, which take float32 params."""
    return torch.float32 if kind in (COMPACT, COMPACT_MOMENTUM, ADAMW_COMPACT_MOMENTUM, *INT8_KINDS) else torch.float64


def make_model(kind="lookahead"):
    """For int8 blocks, weights only, whose row shards (32 x 8 of 64 x 8; 1 x 64 and 0 x 64) hold
    whole blocks of 256 of the unsharded weights, so one process cuts the same blocks
    (see [NOTE: int8 blocks of a shard] in lookahead_fused/sharded.py)."""
    torch.manual_seed(0)
    if kind in INT8_KINDS:
        layers = torch.nn.Sequential(torch.nn.Linear(8, 64, bias=False), torch.nn.Tanh(), torch.nn.Linear(64, 1, bias=False))
    else:
        layers = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    return layers.to(model_dtype(kind))


def make_optimizer(model, kind="lookahead"):
    """Pullback momenta and Nesterov outer momentum: every per-param state Lookahead keeps; around
    Adam, or LookaheadAdamW (kind "lookahead_adamw": the same options, AdamW's step fused with the sync).
    Kind COMPACT: bf16+int8 slow weights around Adam, with the options they take
    (see [NOTE: what compact slow weights support] in lookahead_fused/options.py), COMPACT_MOMENTUM
    the same with a bfloat16 outer momentum, COMPACT_INT8_MOMENTUM with an int8 one, ADAMW_COMPACT_MOMENTUM
    COMPACT_MOMENTUM's and ADAMW_COMPACT_INT8_MOMENTUM COMPACT_INT8_MOMENTUM's in LookaheadAdamW (synced in
    its pass); INT8_MOMENTUM and
    ADAMW_INT8_MOMENTUM: the outer momentum in
    int8 blocks, around Adam or in LookaheadAdamW; ADAMW_INT8_DELTA: LookaheadAdamW's int8-delta slow
    weights, with the options they take (see [NOTE: what int8-delta supports] in lookahead_fused/options.py),
    ADAMW_INT8_DELTA_MOMENTUM the same beside an int8 outer momentum, ADAMW_INT8_DELTA_BF16_MOMENTUM
    beside a bfloat16 one."""
    if kind in INT8_DELTA_OUTER:
        return LookaheadAdamW(model.parameters(), lr=1e-2, weight_decay=0.01, k=K, alpha=0.5, pullback_momentum="pullback",
                              slow_dtype="int8-delta", **INT8_DELTA_OUTER[kind])  # fmt: skip
    if kind == COMPACT:
        adam = torch.optim.Adam(model.parameters(), lr=1e-2)
        return Lookahead(adam, k=K, alpha=0.5, pullback_momentum="pullback", slow_dtype=bf16_int8.SLOW_DTYPE)
    options = {"k": K, "alpha": 0.5, "pullback_momentum": "pullback", "outer_momentum": 0.5, "nesterov": True}
    if kind in (COMPACT_MOMENTUM, ADAMW_COMPACT_MOMENTUM):
        options |= {"slow_dtype": bf16_int8.SLOW_DTYPE, "momentum_dtype": torch.bfloat16}
    if kind in (COMPACT_INT8_MOMENTUM, ADAMW_COMPACT_INT8_MOMENTUM):
        options["slow_dtype"] = bf16_int8.SLOW_DTYPE
    if kind in (INT8_MOMENTUM, ADAMW_INT8_MOMENTUM, COMPACT_INT8_MOMENTUM, ADAMW_COMPACT_INT8_MOMENTUM):
        options["momentum_dtype"] = "int8"
    if kind in ("lookahead_adamw", ADAMW_INT8_MOMENTUM, ADAMW_COMPACT_MOMENTUM, ADAMW_COMPACT_INT8_MOMENTUM):
        return LookaheadAdamW(model.parameters(), lr=1e-2, weight_decay=0.01, **options)
    return Lookahead(torch.optim.Adam(model.parameters(), lr=1e-2), **options)


def slow_tensors(opt, params):
    """The tensors that hold the slow weights of `params`, as stored (two per param when compact)."""
    keys = slow_keys(opt.defaults["slow_dtype"])
    return [opt.state[p][key] for p in params for key in keys]


def slow_values(opt, params):
    """The slow weights of `params` (decoded when compact)."""
    return [slow_weight_value(opt.state[p], p) for p in params]


def batch(step, rank=0, world=1):
    """Batch number `step` of the global batch, or this rank's equal part of it."""
    g = torch.Generator().manual_seed(step)
    x = torch.randn(GLOBAL_BATCH, 8, generator=g, dtype=torch.float64)
    y = torch.randn(GLOBAL_BATCH, 1, generator=g, dtype=torch.float64)
    part = GLOBAL_BATCH // world
    return x[rank * part : (rank + 1) * part], y[rank * part : (rank + 1) * part]


def train(model, opt, steps, rank=0, world=1):
    dtype = next(model.parameters()).dtype
    for step in steps:
        x, y = (t.to(dtype) for t in batch(step, rank, world))
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def _init(rank, world, init_file):
    torch.set_num_threads(1)  # up to four processes share the machine's cores
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)


def _finish():
    """End a worker that succeeded, without finalizing the interpreter.

    [NOTE: worker exit] A gloo process group runs each collective on its own "pt_gloo_runloop"
    thread, and that thread drops its reference to the finished work (and to the work's tensors) a
    moment after the caller has seen the result. A tensor that Python has seen owns a PyObject, so
    dropping the last C++ reference to it takes the GIL. If the main thread has meanwhile returned
    and Python is finalizing, taking the GIL makes that thread pthread_exit from inside the work's
    noexcept destructor: std::terminate, "terminate called without an active exception", SIGABRT
    (seen 1 exit in 15 with gdb: ~AsyncAllgatherWork -> decref_pyobject -> take_gil ->
    PyThread_exit_thread). destroy_process_group() does not join those threads while a DDP or FSDP
    module still holds the group. So a worker waits for every rank (a barrier: no rank leaves while
    another still talks to it), destroys the group, and leaves with os._exit, so no finalization
    races the runloop threads. An exception still propagates to torch.multiprocessing.spawn.
    """
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _same_on_every_rank(tensors) -> bool:
    for t in tensors:
        gathered = [torch.empty_like(t) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, t.contiguous())
        if not all(torch.equal(g, gathered[0]) for g in gathered):
            return False
    return True


def ddp_worker(rank, world, init_file, out_dir, steps):
    _init(rank, world, init_file)
    model = torch.nn.parallel.DistributedDataParallel(make_model())
    opt = make_optimizer(model)
    train(model, opt, range(1, steps + 1), rank, world)
    params = [p.detach() for p in model.parameters()]
    slow = slow_tensors(opt, model.parameters())
    identical = _same_on_every_rank(params + slow)
    if rank == 0:
        torch.save({"params": params, "identical": identical, "step": opt.step_count}, os.path.join(out_dir, "ddp.pt"))
    _finish()


def fsdp2_worker(rank, world, init_file, out_dir, steps, kind="lookahead"):
    """fully_shard, train, save with torch.distributed.checkpoint mid-cycle (the state dicts as they
    are, and through torch's get_state_dict), train on; then fresh models and optimizers load each
    checkpoint and train the same steps."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    _init(rank, world, init_file)
    mesh = init_device_mesh("cpu", (world,))

    def sharded_model():
        model = make_model(kind)
        for layer in model:
            if isinstance(layer, torch.nn.Linear):
                fully_shard(layer, mesh=mesh)
        return fully_shard(model, mesh=mesh)

    def full(tensors):
        return [t.full_tensor().detach() for t in tensors]

    def trajectory(model, opt):
        """The params, the slow state as stored, and the slow weights' values, gathered."""
        params = list(model.parameters())
        return full(params) + full(slow_tensors(opt, params)) + full(slow_values(opt, params))

    checkpoint_dir, helper_dir = os.path.join(out_dir, "dcp"), os.path.join(out_dir, "dcp-helpers")
    saved_at = steps // 2 + 1  # not a multiple of K: the counter matters
    model = sharded_model()
    opt = make_optimizer(model, kind)
    local_shapes = [tuple(p.to_local().shape) for p in model.parameters()]
    first_param = next(iter(model.parameters()))
    try:  # a sharded param with a plain slow tensor: refused before anything is written
        ops.lookahead_sync_([first_param], [first_param.to_local().clone()], 0.5)
        mixed_refused = ""
    except ValueError as error:
        mixed_refused = str(error)
    train(model, opt, range(1, saved_at + 1), rank, world)
    dcp.save({"model": model.state_dict(), "optim": opt.state_dict()}, checkpoint_id=checkpoint_dir)
    model_sd, optim_sd = get_state_dict(model, opt)  # torch's helpers: FQN keys, "state"/"param_groups" only
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=helper_dir)
    train(model, opt, range(saved_at + 1, steps + 1), rank, world)
    first = trajectory(model, opt)
    # every per-param state tensor of the param's shape (all but the inner step counts): sharded like it?
    sharded_like_param = {
        key: all(type(opt.state[p][key]) is type(p) and opt.state[p][key].placements == p.placements
                 for p in model.parameters())  # fmt: skip
        for key, value in opt.state[first_param].items()
        if isinstance(value, torch.Tensor) and value.shape == first_param.shape
    }

    layout_refused = ""
    if kind in INT8_KINDS:  # column shards: not FSDP2's layout
        from torch.distributed.tensor import Shard, distribute_tensor

        columns = torch.nn.Parameter(distribute_tensor(torch.zeros(4, 4), mesh, [Shard(1)]))
        try:
            if kind in INT8_DELTA_OUTER:
                LookaheadAdamW([columns], slow_dtype="int8-delta")
            else:
                Lookahead(torch.optim.SGD([columns], lr=0.1), outer_momentum=0.5, momentum_dtype="int8")
        except ValueError as error:
            layout_refused = str(error)
    scales = [opt.state[p][key] for p in model.parameters() for key in ("outer_momentum_scales", "slow_delta_scales")
              if key in opt.state[p]]  # fmt: skip
    scale_shapes = [(tuple(s.shape), tuple(s.to_local().shape), s.placements == first_param.placements) for s in scales]
    resumed_model = sharded_model()
    resumed = make_optimizer(resumed_model, kind)
    resumed.init_state()
    template = {"model": resumed_model.state_dict(), "optim": resumed.state_dict()}
    dcp.load(template, checkpoint_id=checkpoint_dir)
    resumed_model.load_state_dict(template["model"])
    resumed.load_state_dict(template["optim"])
    resumed_step = resumed.step_count
    train(resumed_model, resumed, range(saved_at + 1, steps + 1), rank, world)
    second = trajectory(resumed_model, resumed)

    helper_model = sharded_model()
    helper_opt = make_optimizer(helper_model, kind)
    helper_opt.init_state()
    model_sd, optim_sd = get_state_dict(helper_model, helper_opt)
    template = {"model": model_sd, "optim": optim_sd}
    dcp.load(template, checkpoint_id=helper_dir)
    set_state_dict(helper_model, helper_opt, model_state_dict=template["model"], optim_state_dict=template["optim"])
    helper_step = helper_opt.step_count
    train(helper_model, helper_opt, range(saved_at + 1, steps + 1), rank, world)
    third = trajectory(helper_model, helper_opt)
    if rank == 0:
        torch.save(
            {
                "first": first,
                "second": second,
                "third": third,
                "helper_step": helper_step,
                "sharded_like_param": sharded_like_param,
                "local_shapes": local_shapes,
                "scale_shapes": scale_shapes,
                "layout_refused": layout_refused,
                "mixed_refused": mixed_refused,
                "resumed_step": resumed_step,
                "saved_at": saved_at,
            },
            os.path.join(out_dir, "fsdp2.pt"),
        )
    _finish()


def snippet_worker(rank, world, init_file, out_dir, code):
    """Run a README snippet in each process (tests/test_readme.py), in out_dir."""
    _init(rank, world, init_file)
    os.chdir(out_dir)
    exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
    _finish()
