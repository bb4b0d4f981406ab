"""What each process of tests/test_replicas.py runs (gloo, on the CPU): Lookahead with replicas=group,
each rank one replica training on its own part of every batch. Rank 0 writes what the test checks
to `out_dir`; ranks compare themselves with each other in here. The float64 DiLoCo the test compares
against runs every replica in one process (`diloco_float64`)."""

from __future__ import annotations

import copy
import os
import warnings

import torch
import torch.distributed as dist

from lookahead_fused import Lookahead, LookaheadAdamW

from .distributed_workers import _finish, _init, _same_on_every_rank, batch

K = 3
ALPHA, MU = 0.7, 0.9  # DiLoCo's outer Nesterov step
INNER_LR = 0.05
KINDS = ["lookahead", "lookahead_adamw"]


def make_model(dtype=torch.float64):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).to(dtype)


def make_inner(params, kind):
    """The inner optimizer of one replica: torch's SGD with momentum, or the AdamW that LookaheadAdamW equals."""
    if kind == "lookahead_adamw":
        return torch.optim.AdamW(params, lr=INNER_LR, weight_decay=0.01)
    return torch.optim.SGD(params, lr=INNER_LR, momentum=0.9)


def make_optimizer(model, kind, **options):
    outer = {"k": K, "alpha": ALPHA, "outer_momentum": MU, "nesterov": True, **options}
    if kind == "lookahead_adamw":
        return LookaheadAdamW(model.parameters(), lr=INNER_LR, weight_decay=0.01, **outer)
    return Lookahead(make_inner(model.parameters(), kind), **outer)


def inner_step(model, opt, step, rank, world):
    """One inner step of replica `rank` on its part of batch `step`."""
    dtype = next(model.parameters()).dtype
    x, y = (t.to(dtype) for t in batch(step, rank, world))
    opt.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    opt.step()


def diloco_float64(world: int, steps: int, kind: str, fragments: int = 1, delay: int = 0, delay_mix: float = 0.0):
    """(replica 0's params, slow weights, outer momenta) after `steps` of DiLoCo in float64 with
    `world` replicas in this process: each replica's own inner optimizer on its part of each batch;
    fragment j of the params (by bytes in order, as docs/design.md states the rule) starts its sync
    after the steps t with t mod K = floor((j + 1) K / fragments) mod K, taking
    d = mean over the replicas of fast - slow then, and lands it `delay` steps later:
    m <- mu m + d, slow <- slow + alpha (d + mu m), every replica's params <- (1 - delay_mix) slow +
    delay_mix params."""
    models = [make_model() for _ in range(world)]
    inners = [make_inner(m.parameters(), kind) for m in models]
    slow = [p.detach().clone() for p in models[0].parameters()]
    momenta = [torch.zeros_like(s) for s in slow]
    sizes = [s.numel() for s in slow]
    fragment = [min(fragments - 1, (2 * sum(sizes[:i]) + size) * fragments // (2 * sum(sizes))) for i, size in enumerate(sizes)]
    in_flight = {}
    for step in range(1, steps + 1):
        for rank, (model, inner) in enumerate(zip(models, inners)):
            inner_step(model, inner, step, rank, world)
        for j in range(fragments):
            phase = (j + 1) * K // fragments % K
            if step % K == phase:
                in_flight[j] = {i: sum(list(m.parameters())[i].detach() - slow[i] for m in models) / world
                                for i in range(len(slow)) if fragment[i] == j}  # fmt: skip
            if step - delay >= 1 and (step - delay) % K == phase:
                with torch.no_grad():
                    for i, d in in_flight.pop(j).items():
                        momenta[i] = MU * momenta[i] + d
                        slow[i] += ALPHA * (d + MU * momenta[i])
                        for m in models:
                            p = list(m.parameters())[i]
                            p.copy_((1 - delay_mix) * slow[i] + delay_mix * p)
    return [p.detach() for p in models[0].parameters()], slow, momenta


def outer_state(opt, model) -> list[torch.Tensor]:
    """The slow weights, then the outer momenta."""
    params = list(model.parameters())
    return [opt.state[p]["slow_param"] for p in params] + [opt.state[p]["outer_momentum"] for p in params]


def resume(model, opt, saved, rank, world, steps) -> None:
    """Load `saved` (the optimizer's state_dict and the params after step K + 1) and train on to `steps`."""
    with torch.no_grad():
        for p, value in zip(model.parameters(), saved[1]):
            p.copy_(value)
    opt.load_state_dict(saved[0])
    for step in range(K + 2, steps + 1):
        inner_step(model, opt, step, rank, world)


def diloco_worker(rank, world, init_file, out_dir, steps, kind, stream=None):
    """Train `steps` (a multiple of K), a checkpoint taken mid-period (after step K + 1); then a fresh
    optimizer resumes from it to the same end, bit for bit. `stream`: fragments, delay, delay_mix."""
    _init(rank, world, init_file)
    stream = stream or {}
    model = make_model()
    opt = make_optimizer(model, kind, replicas=dist.group.WORLD, **stream)
    identical_after_syncs = []
    for step in range(1, steps + 1):
        inner_step(model, opt, step, rank, world)
        if step == K + 1:
            saved = (copy.deepcopy(opt.state_dict()), [p.detach().clone() for p in model.parameters()])
        if step % K == 0:  # with fragments or delay, some params hold each replica's own progress here
            shared = [] if stream else [p.detach() for p in model.parameters()]
            identical_after_syncs.append(_same_on_every_rank(shared + outer_state(opt, model)))
    final = [p.detach().clone() for p in model.parameters()] + [t.clone() for t in outer_state(opt, model)]
    resumed_model = make_model()  # built from the same start, then each replica loads its own checkpoint
    resumed = make_optimizer(resumed_model, kind, replicas=dist.group.WORLD, **stream)
    resume(resumed_model, resumed, saved, rank, world, steps)
    again = [p.detach() for p in resumed_model.parameters()] + outer_state(resumed, resumed_model)
    if rank == 0:
        torch.save({"final": final, "identical_after_syncs": identical_after_syncs,
                    "resumed_equal": all(torch.equal(a, b) for a, b in zip(final, again))},
                   os.path.join(out_dir, "diloco.pt"))  # fmt: skip
    _finish()


def fast_of(rank: int, slow: torch.Tensor) -> torch.Tensor:
    """Replica `rank`'s fast weights for the one-sync case: its slow weights moved by its own amount."""
    g = torch.Generator().manual_seed(1000 + rank)
    return slow + 0.1 * torch.randn(slow.shape, generator=g, dtype=torch.float64).to(slow.dtype)


def wire_worker(rank, world, init_file, out_dir, steps, replica_dtype):
    """One sync of float32 params (plain Lookahead, alpha 0.5) whose replicas hold the fast weights
    of `fast_of`, the first weight a strided view (every other column of a wider tensor: no fused
    kernel takes it, the pack and the sync run it through the reference loop); the new slow weights
    and whether every replica has the same, and the dtypes of the buffers the sync kept (a bfloat16
    wire: the pack's own bfloat16 buffers beside the float32 ones)."""
    _init(rank, world, init_file)
    model = make_model(torch.float32)
    first = model[0].weight
    wide = torch.zeros(first.shape[0], 2 * first.shape[1])
    model[0].weight = torch.nn.Parameter(wide[:, ::2].copy_(first.detach()))
    assert not model[0].weight.is_contiguous()
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), k=K, alpha=0.5, replicas=dist.group.WORLD,
                    replica_dtype=replica_dtype)  # fmt: skip
    start = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(fast_of(rank, p))
    opt.sync_lookahead()
    slow = [opt.state[p]["slow_param"].clone() for p in model.parameters()]
    identical = _same_on_every_rank(slow + [p.detach() for p in model.parameters()])
    params_are_slow = all(torch.equal(p, s) for p, s in zip(model.parameters(), slow))
    buffer_dtypes = {flat.dtype for _, flats, _ in opt._replicas._layouts.values() for flat in flats}
    if rank == 0:
        torch.save({"start": start, "slow": slow, "identical": identical, "params_are_slow": params_are_slow,
                    "buffer_dtypes": buffer_dtypes}, os.path.join(out_dir, "wire.pt"))  # fmt: skip
    _finish()


def refusal_worker(rank, world, init_file, out_dir, steps):
    """Replicas that start apart, and replicas that fall out of step: each rank's message."""
    _init(rank, world, init_file)
    messages = {}
    model = make_model()
    if rank == 1:
        with torch.no_grad():
            model[2].weight[0, 3] += 1e-12
    held = [p.detach().clone() for p in model.parameters()]
    try:
        make_optimizer(model, "lookahead", replicas=dist.group.WORLD)
    except ValueError as error:
        messages["apart"] = str(error)
    messages["apart_changed_nothing"] = all(torch.equal(p, h) for p, h in zip(model.parameters(), held))
    model = make_model()
    opt = make_optimizer(model, "lookahead", replicas=dist.group.WORLD)
    inner_step(model, opt, 1, rank, world)
    held_slow = [opt.state[p]["slow_param"].clone() for p in model.parameters()]
    try:  # rank 1 syncs now, at step 1; rank 0 at its next sync, step K
        if rank == 1:
            opt.sync_lookahead()
        else:
            for step in range(2, K + 1):
                inner_step(model, opt, step, rank, world)
    except RuntimeError as error:
        messages["out_of_step"] = str(error)
    messages["slow_unchanged"] = all(torch.equal(opt.state[p]["slow_param"], h) for p, h in zip(model.parameters(), held_slow))
    gathered = [None] * world
    dist.all_gather_object(gathered, messages)
    if rank == 0:
        torch.save(gathered, os.path.join(out_dir, "refusals.pt"))
    _finish()


def one_replica_worker(rank, world, init_file, out_dir, steps):
    """A group of one replica against replicas=None, bit for bit; and the options replicas refuse."""
    _init(rank, world, init_file)
    runs = []
    for replicas in (None, dist.group.WORLD):
        model = make_model()
        opt = make_optimizer(model, "lookahead", replicas=replicas)
        for step in range(1, steps + 1):
            inner_step(model, opt, step, 0, 1)
        runs.append([p.detach() for p in model.parameters()] + outer_state(opt, model))
    refused = {}
    cases = {
        "capturable": {"capturable": True},
        "adaptive": {"alpha": "adaptive", "outer_momentum": 0.0, "nesterov": False},
        "compact": {"slow_dtype": "bf16+int8", "outer_momentum": 0.0, "nesterov": False},
        "int8_momentum": {"momentum_dtype": "int8"},
        "int4_wire": {"replica_dtype": "int4"},
        "fragments_over_k": {"fragments": K + 1},
        "delay_of_k": {"delay": K},
        "mix_without_delay": {"delay_mix": 0.5},
        "mix_over_one": {"delay": 1, "delay_mix": 1.5},
        "fragments_not_an_integer": {"fragments": 2.0},
        "fragments_with_reset": {"fragments": 2, "pullback_momentum": "reset"},
    }
    for name, options in cases.items():
        try:
            make_optimizer(make_model(torch.float32), "lookahead", replicas=dist.group.WORLD, **options)
        except ValueError as error:
            refused[name] = str(error)
    saved_with_k_2 = make_optimizer(make_model(), "lookahead", replicas=dist.group.WORLD, k=2).state_dict()
    streaming = make_optimizer(make_model(), "lookahead", replicas=dist.group.WORLD, fragments=3)
    try:
        streaming.load_state_dict(saved_with_k_2)
    except ValueError as error:
        refused["loaded_k_under_fragments"] = str(error)
    refused["loaded_k_changed_nothing"] = streaming.k == K
    for name, options in {"wire_without_replicas": {"replica_dtype": torch.bfloat16},
                          "not_a_group": {"replicas": "world"},
                          "fragments_without_replicas": {"fragments": 2}}.items():  # fmt: skip
        try:
            make_optimizer(make_model(), "lookahead", **options)
        except (ValueError, TypeError) as error:
            refused[name] = f"{type(error).__name__}: {error}"
    torch.save({"same": all(torch.equal(a, b) for a, b in zip(*runs)), "refused": refused},
               os.path.join(out_dir, "one.pt"))  # fmt: skip
    _finish()


def stream_now_worker(rank, world, init_file, out_dir, steps):
    """2 fragments, delay 2: sync_lookahead() after step 4, with both fragments in flight; then the steps
    on to `steps`, also from a checkpoint taken right after sync_lookahead(). And the checkpoint of
    step 4 loaded into an optimizer without fragments, and into one of another delay."""
    _init(rank, world, init_file)
    model = make_model()
    opt = make_optimizer(model, "lookahead", replicas=dist.group.WORLD, fragments=2, delay=2)
    for step in range(1, K + 2):
        inner_step(model, opt, step, rank, world)
    params = list(model.parameters())
    result = {"in_flight_before": sum("pending_delta" in opt.state[p] for p in params)}
    try:
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))]})
    except RuntimeError as error:
        result["add_refused"] = str(error)
    saved = copy.deepcopy(opt.state_dict())
    opt.sync_lookahead()
    after_sync = (copy.deepcopy(opt.state_dict()), [p.detach().clone() for p in params])
    result.update({
        "params_are_slow": all(torch.equal(p, opt.state[p]["slow_param"]) for p in params),
        "identical": _same_on_every_rank([p.detach() for p in params] + outer_state(opt, model)),
        "in_flight_after": sum("pending_delta" in opt.state[p] for p in params),
    })  # fmt: skip
    for step in range(K + 2, steps + 1):
        inner_step(model, opt, step, rank, world)
    result["identical_at_the_end"] = _same_on_every_rank(outer_state(opt, model))
    final = [p.detach().clone() for p in params] + [t.clone() for t in outer_state(opt, model)]
    resumed_model = make_model()
    resumed = make_optimizer(resumed_model, "lookahead", replicas=dist.group.WORLD, fragments=2, delay=2)
    resume(resumed_model, resumed, after_sync, rank, world, steps)
    again = [p.detach() for p in resumed_model.parameters()] + outer_state(resumed, resumed_model)
    result["resumed_after_sync_lookahead_equal"] = all(torch.equal(a, b) for a, b in zip(final, again))
    plain = make_optimizer(make_model(), "lookahead", replicas=dist.group.WORLD)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plain.load_state_dict(saved)
    result["warnings"] = [str(w.message) for w in caught]
    result["plain_in_flight"] = sum("pending_delta" in state for state in plain.state.values())
    other_delay = make_optimizer(make_model(), "lookahead", replicas=dist.group.WORLD, fragments=2, delay=1)
    try:
        other_delay.load_state_dict(saved)
    except ValueError as error:
        result["other_delay_refused"] = str(error)
    if rank == 0:
        torch.save(result, os.path.join(out_dir, "now.pt"))
    _finish()


def hsdp_worker(rank, world, init_file, out_dir, steps, kind, stream=None):
    """2 replicas x 2 shards on a ("replicate", "shard") mesh: FSDP2 within each replica, DiLoCo across
    them (replicas=the "replicate" dimension's group). Rank r * 2 + s trains on quarter r * 2 + s of
    each batch, so replica r's gradient (FSDP2's mean over its two ranks) is that of half r, as
    replica r's in the float64 DiLoCo with two replicas. A checkpoint after step K + 1, a state_dict
    and each replica's own torch.distributed.checkpoint (over its shard group), resumes bit for bit.
    `stream`: fragments, delay, delay_mix."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    _init(rank, world, init_file)
    mesh = init_device_mesh("cpu", (2, world // 2), mesh_dim_names=("replicate", "shard"))

    def sharded_model():
        model = make_model()
        for layer in model:
            if isinstance(layer, torch.nn.Linear):
                fully_shard(layer, mesh=mesh["shard"])
        return fully_shard(model, mesh=mesh["shard"])

    def full_state(model, opt):
        return [t.full_tensor().detach().clone() for t in list(model.parameters()) + outer_state(opt, model)]

    stream = stream or {}
    replica_dir = os.path.join(out_dir, f"dcp-replica-{rank // mesh['shard'].size()}")
    model = sharded_model()
    opt = make_optimizer(model, kind, replicas=mesh["replicate"].get_group(), **stream)
    identical_after_syncs = []
    for step in range(1, steps + 1):
        inner_step(model, opt, step, rank, world)
        if step == K + 1:
            saved = (copy.deepcopy(opt.state_dict()), [p.detach().clone() for p in model.parameters()])
            dcp.save({"model": model.state_dict(), "optim": opt.state_dict()}, checkpoint_id=replica_dir,
                     process_group=mesh["shard"].get_group())  # fmt: skip
        if step % K == 0:  # with fragments or delay, some params hold each replica's own progress here
            shared = full_state(model, opt)[0 if not stream else len(list(model.parameters())):]
            identical_after_syncs.append(_same_on_every_rank(shared))
    final = full_state(model, opt)
    state_sharded = all(opt.state[p]["slow_param"].placements == p.placements for p in model.parameters())
    resumed_model = sharded_model()
    resumed = make_optimizer(resumed_model, kind, replicas=mesh["replicate"].get_group(), **stream)
    resume(resumed_model, resumed, saved, rank, world, steps)
    again = full_state(resumed_model, resumed)
    dcp_model = sharded_model()  # each replica's own DCP checkpoint, loaded into a template
    from_dcp = make_optimizer(dcp_model, kind, replicas=mesh["replicate"].get_group(), **stream)
    from_dcp.init_state()
    template = {"model": dcp_model.state_dict(), "optim": from_dcp.state_dict()}
    dcp.load(template, checkpoint_id=replica_dir, process_group=mesh["shard"].get_group())
    dcp_model.load_state_dict(template["model"])
    from_dcp.load_state_dict(template["optim"])
    for step in range(K + 2, steps + 1):
        inner_step(dcp_model, from_dcp, step, rank, world)
    through_dcp = full_state(dcp_model, from_dcp)
    if rank == 0:
        torch.save({"final": final, "identical_after_syncs": identical_after_syncs, "state_sharded": state_sharded,
                    "resumed_equal": all(torch.equal(a, b) for a, b in zip(final, again)),
                    "dcp_equal": all(torch.equal(a, b) for a, b in zip(final, through_dcp))},
                   os.path.join(out_dir, "hsdp.pt"))  # fmt: skip
    _finish()


def ddp_in_replica_worker(rank, world, init_file, out_dir, steps, kind):
    """2 replicas x 2 data-parallel ranks: DDP within each replica (over the "shard" dimension's group
    of a ("replicate", "shard") mesh), DiLoCo across them (replicas=the "replicate" dimension's group).
    Rank r * 2 + s trains on quarter r * 2 + s of each batch, so replica r's gradient (DDP's mean over
    its two ranks) is that of half r, as replica r's in the float64 DiLoCo with two replicas. A
    checkpoint after step K + 1 resumes bit for bit."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.nn.parallel import DistributedDataParallel

    _init(rank, world, init_file)
    mesh = init_device_mesh("cpu", (2, world // 2), mesh_dim_names=("replicate", "shard"))

    def replica_model():
        return DistributedDataParallel(make_model(), process_group=mesh["shard"].get_group())

    model = replica_model()
    opt = make_optimizer(model, kind, replicas=mesh["replicate"].get_group())
    identical_after_syncs = []
    for step in range(1, steps + 1):
        inner_step(model, opt, step, rank, world)
        if step == K + 1:
            saved = (copy.deepcopy(opt.state_dict()), [p.detach().clone() for p in model.parameters()])
        if step % K == 0:
            identical_after_syncs.append(_same_on_every_rank([p.detach() for p in model.parameters()] + outer_state(opt, model)))
    final = [p.detach().clone() for p in model.parameters()] + [t.clone() for t in outer_state(opt, model)]
    resumed_model = replica_model()
    resumed = make_optimizer(resumed_model, kind, replicas=mesh["replicate"].get_group())
    resume(resumed_model, resumed, saved, rank, world, steps)
    again = [p.detach() for p in resumed_model.parameters()] + outer_state(resumed, resumed_model)
    if rank == 0:
        torch.save({"final": final, "identical_after_syncs": identical_after_syncs,
                    "resumed_equal": all(torch.equal(a, b) for a, b in zip(final, again))},
                   os.path.join(out_dir, "ddp.pt"))  # fmt: skip
    _finish()


def bf16_wire_stream_worker(rank, world, init_file, out_dir, steps):
    """Streaming DiLoCo on float32 params with a bfloat16 wire (the pack's own bfloat16 buffers, one
    pair per fragment): the outer state the same on every replica after every period, and a
    checkpoint taken with a fragment in flight (after step K + 1) resuming bit for bit."""
    _init(rank, world, init_file)
    options = {"replicas": dist.group.WORLD, "replica_dtype": torch.bfloat16, "fragments": 2, "delay": 1}
    model = make_model(torch.float32)
    opt = make_optimizer(model, "lookahead", **options)
    identical_after_syncs = []
    for step in range(1, steps + 1):
        inner_step(model, opt, step, rank, world)
        if step == K + 1:
            saved = (copy.deepcopy(opt.state_dict()), [p.detach().clone() for p in model.parameters()])
        if step % K == 0:
            identical_after_syncs.append(_same_on_every_rank(outer_state(opt, model)))
    final = [p.detach().clone() for p in model.parameters()] + [t.clone() for t in outer_state(opt, model)]
    resumed_model = make_model(torch.float32)
    resumed = make_optimizer(resumed_model, "lookahead", **options)
    resume(resumed_model, resumed, saved, rank, world, steps)
    again = [p.detach() for p in resumed_model.parameters()] + outer_state(resumed, resumed_model)
    buffer_dtypes = {flat.dtype for _, flats, _ in opt._replicas._layouts.values() for flat in flats}
    if rank == 0:
        torch.save({"identical_after_syncs": identical_after_syncs, "buffer_dtypes": buffer_dtypes, "final": final,
                    "resumed_equal": all(torch.equal(a, b) for a, b in zip(final, again))},
                   os.path.join(out_dir, "bf16_stream.pt"))  # fmt: skip
    _finish()
