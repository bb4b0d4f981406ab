"""What each process of tests/test_replicas.py runs (gloo, on the CPU): Lookahead with replicas=group,
each rank one replica training on its own part of every batch. Rank 0 writes what the test checks
to `out_dir`; ranks compare themselves with each other in here. The float64 DiLoCo the test compares
against runs every replica in one process (`diloco_float64`)."""

from __future__ import annotations

import copy
import os

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


def diloco_float64(world: int, steps: int, kind: str) -> tuple[list, list, list]:
    """(replica 0's params, slow weights, outer momenta) after `steps` of DiLoCo in float64 with
    `world` replicas in this process: each replica's own inner optimizer on its part of each batch,
    and every K steps d = mean over the replicas of fast - slow, m <- mu m + d,
    slow <- slow + alpha (d + mu m), every replica's params <- slow."""
    models = [make_model() for _ in range(world)]
    inners = [make_inner(m.parameters(), kind) for m in models]
    slow = [p.detach().clone() for p in models[0].parameters()]
    momenta = [torch.zeros_like(s) for s in slow]
    for step in range(1, steps + 1):
        for rank, (model, inner) in enumerate(zip(models, inners)):
            inner_step(model, inner, step, rank, world)
        if step % K:
            continue
        with torch.no_grad():
            for i, s in enumerate(slow):
                d = sum(list(m.parameters())[i] - s for m in models) / world
                momenta[i] = MU * momenta[i] + d
                s += ALPHA * (d + MU * momenta[i])
                for m in models:
                    list(m.parameters())[i].copy_(s)
    return [p.detach() for p in models[0].parameters()], slow, momenta


def outer_state(opt, model) -> list[torch.Tensor]:
    """The slow weights, then the outer momenta."""
    params = list(model.parameters())
    return [opt.state[p]["slow_param"] for p in params] + [opt.state[p]["outer_momentum"] for p in params]


def diloco_worker(rank, world, init_file, out_dir, steps, kind):
    """Train `steps` (a multiple of K), a checkpoint taken mid-period (after step K + 1); then a fresh
    optimizer resumes from it to the same end, bit for bit."""
    _init(rank, world, init_file)
    model = make_model()
    opt = make_optimizer(model, kind, replicas=dist.group.WORLD)
    identical_after_syncs = []
    for step in range(1, steps + 1):
        inner_step(model, opt, step, rank, world)
        if step == K + 1:
            saved = (copy.deepcopy(opt.state_dict()), [p.detach().clone() for p in model.parameters()])
        if step % K == 0:
            identical_after_syncs.append(_same_on_every_rank([p.detach() for p in model.parameters()] + outer_state(opt, model)))
    final = [p.detach().clone() for p in model.parameters()] + [t.clone() for t in outer_state(opt, model)]
    resumed_model = make_model()  # built from the same start, then each replica loads its own checkpoint
    resumed = make_optimizer(resumed_model, kind, replicas=dist.group.WORLD)
    with torch.no_grad():
        for p, value in zip(resumed_model.parameters(), saved[1]):
            p.copy_(value)
    resumed.load_state_dict(saved[0])
    for step in range(K + 2, steps + 1):
        inner_step(resumed_model, resumed, step, rank, world)
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
    of `fast_of`; the new slow weights and whether every replica has the same."""
    _init(rank, world, init_file)
    model = make_model(torch.float32)
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
    if rank == 0:
        torch.save({"start": start, "slow": slow, "identical": identical, "params_are_slow": params_are_slow},
                   os.path.join(out_dir, "wire.pt"))  # fmt: skip
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
    }
    for name, options in cases.items():
        try:
            make_optimizer(make_model(torch.float32), "lookahead", replicas=dist.group.WORLD, **options)
        except ValueError as error:
            refused[name] = str(error)
    for name, options in {"wire_without_replicas": {"replica_dtype": torch.bfloat16},
                          "not_a_group": {"replicas": "world"}}.items():  # fmt: skip
        try:
            make_optimizer(make_model(), "lookahead", **options)
        except (ValueError, TypeError) as error:
            refused[name] = f"{type(error).__name__}: {error}"
    torch.save({"same": all(torch.equal(a, b) for a, b in zip(*runs)), "refused": refused},
               os.path.join(out_dir, "one.pt"))  # fmt: skip
    _finish()
