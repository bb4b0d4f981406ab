"""Lookahead with replicas=group (DiLoCo; see [NOTE: replicas] in lookahead_fused/replicas.py), on the
CPU with gloo, 2 processes: against DiLoCo in float64 with every replica in one process, the replicas
bit for bit the same after every sync, a mid-period checkpoint resuming bit for bit, each wire
dtype within its bound, a group of one replica as replicas=None, and the refusals."""

import os
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from . import replica_workers as workers
from .matrix import ulp

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()) or sys.platform != "linux", reason="needs torch.distributed with gloo"
)

WORLD = 2
STEPS = 3 * workers.K


def _spawn(worker, tmp_path, *extra, world=WORLD):
    mp.spawn(worker, args=(world, str(tmp_path / "init"), str(tmp_path), STEPS, *extra), nprocs=world, join=True)


@pytest.mark.parametrize("kind", workers.KINDS)
def test_diloco_follows_float64_and_every_replica_holds_the_same_state(tmp_path, kind):
    _spawn(workers.diloco_worker, tmp_path, kind)
    result = torch.load(os.path.join(tmp_path, "diloco.pt"))
    assert result["identical_after_syncs"] == [True] * (STEPS // workers.K)
    assert result["resumed_equal"], "the run resumed from the mid-period checkpoint left the trajectory"
    params, slow, momenta = workers.diloco_float64(WORLD, STEPS, kind)
    for got, want in zip(result["final"], params + slow + momenta, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("replica_dtype", [None, torch.float32, torch.bfloat16, "int8"], ids=str)
def test_each_wire_dtype_keeps_its_bound(tmp_path, replica_dtype):
    """One sync at alpha 0.5: the new slow weight against float64, within 8 float32 ulp of the values
    (the pack, the sum, the sum's half and the lerp each round once in float32); with bfloat16 on the
    wire, each replica's d = fast - slow rounds to bfloat16 (at most 2^-8 of |d|) and so does their sum
    (2^-8 of at most 2 max |d|): within 2^-7 of max |d| more for the mean of two replicas, times alpha;
    with int8 blocks each replica's d within its block's max |d| / 254 + 2^-20 of it (here bounded by
    the largest |d| of any param, as a block spans params), times alpha. Past the float32 bound
    somewhere for both (so they were sent so)."""
    _spawn(workers.wire_worker, tmp_path, replica_dtype)
    result = torch.load(os.path.join(tmp_path, "wire.pt"))
    assert result["identical"] and result["params_are_slow"]
    beyond_float32 = False
    largest_of_all_d = max((workers.fast_of(rank, s).double() - s.double()).abs().max() for s in result["start"]
                           for rank in range(WORLD))  # fmt: skip
    for start, got in zip(result["start"], result["slow"], strict=True):
        s = start.double()
        fast = [workers.fast_of(rank, start).double() for rank in range(WORLD)]
        expected = s + 0.5 * (sum(fast) / WORLD - s)
        magnitude = torch.stack([f.abs() for f in fast] + [s.abs()]).amax(0)
        float32_bound = 8 * ulp(magnitude, torch.float32)
        largest_d = torch.stack([(f - s).abs() for f in fast]).amax(0)
        wire_bound = {"torch.bfloat16": 0.5 * 2.0**-7 * largest_d,
                      "int8": 0.5 * (1 / 254 + 2.0**-20) * largest_of_all_d}.get(str(replica_dtype), 0.0)  # fmt: skip
        error = (got.double() - expected).abs()
        assert (error <= float32_bound + wire_bound).all()
        beyond_float32 |= bool((error > float32_bound).any())
    assert beyond_float32 == (replica_dtype in (torch.bfloat16, "int8"))


def test_replicas_that_start_apart_or_fall_out_of_step_raise_on_every_replica(tmp_path):
    _spawn(workers.refusal_worker, tmp_path)
    for rank, messages in enumerate(torch.load(os.path.join(tmp_path, "refusals.pt"))):
        assert "param 2 (in group order) differs between the replicas" in messages.get("apart", ""), rank
        assert messages["apart_changed_nothing"], rank
        assert "replicas out of step: this replica is at step" in messages.get("out_of_step", ""), rank
        assert "the replicas are at steps 1 to 3 with k from 3 to 3" in messages["out_of_step"], rank
        assert messages["slow_unchanged"], f"rank {rank}: the refused sync changed the slow weights"


def test_a_group_of_one_replica_is_the_plain_sync_and_refusals_name_the_option(tmp_path):
    _spawn(workers.one_replica_worker, tmp_path, world=1)
    result = torch.load(os.path.join(tmp_path, "one.pt"))
    assert result["same"], "replicas=<a group of one> left replicas=None's trajectory"
    refused = result["refused"]
    for name, option in [("capturable", "capturable=True"), ("adaptive", "alpha='adaptive'"),
                         ("compact", "slow_dtype='bf16+int8'"), ("int8_momentum", "momentum_dtype='int8'")]:  # fmt: skip
        assert f"replicas do not support {option} yet" in refused.get(name, ""), name
    assert "replica_dtype must be None (the slow weights' dtype), torch.float32, torch.bfloat16 or 'int8'" in refused["int4_wire"]
    assert "replica_dtype=torch.bfloat16 needs replicas=" in refused["wire_without_replicas"]
    assert refused["not_a_group"].startswith("TypeError: replicas must be a torch.distributed ProcessGroup")
