"""Lookahead with replicas=group (DiLoCo; see [NOTE: replicas] in lookahead_fused/replicas.py), on the
CPU with gloo, 2 processes (3 in two tests): against DiLoCo in float64 with every replica in one
process, the replicas bit for bit the same after every sync, a mid-period checkpoint resuming bit for
bit, Streaming DiLoCo (fragments, delay, delay_mix) likewise, each wire dtype within its bound, a
group of one replica as replicas=None, and the refusals."""

import functools
import os
import sys
import types

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lookahead_fused.replicas import Replicas

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


STREAMS = {
    "fragments": {"fragments": 2},
    "delay": {"delay": 2},
    "fragments-delay-mix": {"fragments": 2, "delay": 2, "delay_mix": 0.25},
}


@pytest.mark.parametrize("stream", STREAMS, ids=str)
@pytest.mark.parametrize("kind", workers.KINDS)
def test_streaming_diloco_follows_float64_and_resumes_with_a_fragment_in_flight(tmp_path, kind, stream):
    """Fragments at their phases, landing `delay` steps later, mixed by delay_mix, against float64; the
    checkpoint after step K + 1 (K = 3) holds a fragment in flight wherever delay > 0: with delay 2 the
    sync sent at step 3 (both cases), and with 2 fragments (the first weight, then the other three
    params) also the one sent at step 4."""
    _spawn(workers.diloco_worker, tmp_path, kind, STREAMS[stream])
    result = torch.load(os.path.join(tmp_path, "diloco.pt"))
    assert result["identical_after_syncs"] == [True] * (STEPS // workers.K)
    assert result["resumed_equal"], "the run resumed from the checkpoint with a fragment in flight left the trajectory"
    params, slow, momenta = workers.diloco_float64(WORLD, STEPS, kind, **STREAMS[stream])
    for got, want in zip(result["final"], params + slow + momenta, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("stream", ["plain", "fragments-delay-mix"])
def test_three_replicas_follow_float64(tmp_path, stream):
    """Three replicas (a mean that is not a power-of-two division), DiLoCo and Streaming DiLoCo."""
    options = STREAMS.get(stream, {})
    _spawn(workers.diloco_worker, tmp_path, "lookahead", options, world=3)
    result = torch.load(os.path.join(tmp_path, "diloco.pt"))
    assert result["identical_after_syncs"] == [True] * (STEPS // workers.K)
    assert result["resumed_equal"]
    params, slow, momenta = workers.diloco_float64(3, STEPS, "lookahead", **options)
    for got, want in zip(result["final"], params + slow + momenta, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize(("kind", "stream"), [(kind, "plain") for kind in workers.KINDS] + [("lookahead", "fragments-delay-mix")])
def test_fsdp2_inside_each_replica_follows_float64(tmp_path, kind, stream):
    """HSDP 2 x 2: FSDP2 shards each replica over two ranks, (Streaming) DiLoCo runs across the two
    replicas; the full params, slow weights and outer momenta against the float64 DiLoCo of two
    unsharded replicas, the same on all four ranks after every sync, the slow weights sharded like
    their params, a resume mid-period bit for bit, from a state_dict and from each replica's DCP
    checkpoint."""
    options = STREAMS.get(stream, {})
    _spawn(workers.hsdp_worker, tmp_path, kind, options, world=4)
    result = torch.load(os.path.join(tmp_path, "hsdp.pt"))
    assert result["identical_after_syncs"] == [True] * (STEPS // workers.K)
    assert result["state_sharded"] and result["resumed_equal"]
    assert result["dcp_equal"], "the run resumed from the replica's DCP checkpoint left the trajectory"
    params, slow, momenta = workers.diloco_float64(2, STEPS, kind, **options)
    for got, want in zip(result["final"], params + slow + momenta, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("kind", workers.KINDS)
def test_ddp_inside_each_replica_follows_float64(tmp_path, kind):
    """2 x 2: DDP averages the gradients of two ranks inside each replica, DiLoCo runs across the two
    replicas; the params, slow weights and outer momenta against the float64 DiLoCo of two replicas,
    the same on all four ranks after every sync, a resume mid-period bit for bit."""
    _spawn(workers.ddp_in_replica_worker, tmp_path, kind, world=4)
    result = torch.load(os.path.join(tmp_path, "ddp.pt"))
    assert result["identical_after_syncs"] == [True] * (STEPS // workers.K)
    assert result["resumed_equal"]
    params, slow, momenta = workers.diloco_float64(2, STEPS, kind)
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
    somewhere for both (so they were sent so). The first weight is strided. A bfloat16 wire is packed
    into bfloat16 buffers of its own, kept beside the float32 ones."""
    _spawn(workers.wire_worker, tmp_path, replica_dtype)
    result = torch.load(os.path.join(tmp_path, "wire.pt"))
    assert result["identical"] and result["params_are_slow"]
    packed = {torch.float32, torch.bfloat16} if replica_dtype == torch.bfloat16 else {torch.float32}
    assert result["buffer_dtypes"] == packed
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


def test_streaming_with_a_bfloat16_wire_resumes_bit_for_bit(tmp_path):
    """Fragments and a delay beside the bfloat16 wire's own buffers: the replicas agree after every
    period, a checkpoint with a fragment in flight resumes bit for bit, and the params, slow weights and
    outer momenta end within 2^-6 of each tensor's displacement (from its start; the momenta's from 0)
    of the float64 streaming DiLoCo: each of a fragment's three syncs rounds d to bfloat16 twice (at
    most 2^-7 of its max |d| together, test_each_wire_dtype_keeps_its_bound), and the float32 inner
    steps carry those errors on."""
    _spawn(workers.bf16_wire_stream_worker, tmp_path)
    result = torch.load(os.path.join(tmp_path, "bf16_stream.pt"))
    assert result["identical_after_syncs"] == [True] * (STEPS // workers.K)
    assert result["resumed_equal"]
    assert result["buffer_dtypes"] == {torch.float32, torch.bfloat16}
    params, slow, momenta = workers.diloco_float64(WORLD, STEPS, "lookahead", fragments=2, delay=1)
    start = [p.detach() for p in workers.make_model().parameters()]
    origins = start + start + [torch.zeros_like(s) for s in start]
    for got, want, origin in zip(result["final"], params + slow + momenta, origins, strict=True):
        displacement = (want - origin).abs().max()
        assert (got.double() - want).abs().max() <= 2.0**-6 * displacement


def test_a_bfloat16_wire_takes_a_twin_only_beside_float32_slow_weights():
    """The buffers' layout (no collective): with a bfloat16 wire the float32 group's pack writes a
    bfloat16 twin at the same offsets; the bfloat16 and float64 groups, whose pack writes their own
    dtype, share their slow-dtype buffer."""
    held = types.SimpleNamespace(_layouts={}, wire_dtype=torch.bfloat16)
    held._pack_dtype = functools.partial(Replicas._pack_dtype, held)
    slows = [torch.zeros(5), torch.zeros(7, dtype=torch.bfloat16), torch.zeros(3, dtype=torch.float64), torch.zeros(9)]
    flats, views = Replicas._buffers_for(held, slows, (None, False), lambda dtype: dtype)
    twins, twin_views = Replicas._buffers_for(held, slows, (None, True), held._pack_dtype, beside=flats)
    assert [t.dtype for t in twins] == [torch.bfloat16, torch.bfloat16, torch.float64]
    assert [t is f for t, f in zip(twins, flats, strict=True)] == [False, True, True]
    assert [v.storage_offset() for v in views] == [w.storage_offset() for w in twin_views]


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
    assert "fragments=4 needs k >= fragments (each step starts at most one fragment), got k=3" in refused["fragments_over_k"]
    assert "delay=3 needs k > delay (a fragment's sync lands before its next one starts), got k=3" in refused["delay_of_k"]
    assert "delay_mix=0.5 needs delay >= 1" in refused["mix_without_delay"]
    assert "delay_mix must be a number in [0, 1], got 1.5" in refused["mix_over_one"]
    assert "fragments must be an integer >= 1, got 2.0" in refused["fragments_not_an_integer"]
    assert "fragments and delay take pullback_momentum='none' only, got 'reset'" in refused["fragments_with_reset"]
    assert "the state_dict's k: fragments=3 needs k >= fragments" in refused["loaded_k_under_fragments"]
    assert refused["loaded_k_changed_nothing"]
    assert "fragments, delay and delay_mix need replicas=" in refused["fragments_without_replicas"]


def test_sync_lookahead_lands_the_fragments_in_flight_and_syncs_the_others(tmp_path):
    """After sync_lookahead() every param holds its new slow weight, the same on every replica, with
    nothing in flight; training goes on from there, and from a checkpoint taken then, bit for bit
    (nothing in flight lands again). A checkpoint with fragments in flight loads into an optimizer
    without fragments, which drops them with a warning, and is refused by one of another delay;
    add_param_group() is refused while a sync is in flight."""
    _spawn(workers.stream_now_worker, tmp_path)
    result = torch.load(os.path.join(tmp_path, "now.pt"))
    assert result["in_flight_before"] == 4, "after step 4 both fragments (every param) are in flight"
    assert "add_param_group() while a fragment's sync is in flight" in result["add_refused"]
    assert result["params_are_slow"] and result["identical"]
    assert result["in_flight_after"] == 0
    assert result["identical_at_the_end"]
    assert result["resumed_after_sync_lookahead_equal"], "a checkpoint after sync_lookahead() landed a sync again"
    assert any("holds syncs of fragments in flight" in message for message in result["warnings"]), result["warnings"]
    assert result["plain_in_flight"] == 0
    assert "syncs in flight of fragments=2, delay=2; this optimizer has fragments=2, delay=1" in result["other_delay_refused"]


def test_fragments_split_the_params_by_bytes_in_order_and_sync_at_their_phases():
    """The rule of docs/design.md, worked by hand: param i goes to fragment
    floor((bytes before it + half its bytes) x F / all bytes); fragment j syncs after the steps
    t = floor((j + 1) k / F) mod k (mod k) and lands delay steps later."""
    from lookahead_fused.streaming import Stream, fragment_indices

    four = [torch.zeros(100) for _ in range(4)]
    assert fragment_indices(four, 2) == [0, 0, 1, 1]
    assert fragment_indices(four, 4) == [0, 1, 2, 3]
    one_large = [torch.zeros(1000), torch.zeros(1), torch.zeros(1, dtype=torch.float64)]
    assert fragment_indices(one_large, 3) == [1, 2, 2]  # (0+1000)*3//2008 = 1; (2000+4)*3//2008 = 2
    stream = Stream(None, fragments=2, delay=1, delay_mix=0.0, k_of=lambda: 5)
    assert [stream.starting(t) for t in range(1, 11)] == [[], [0], [], [], [1], [], [0], [], [], [1]]
    assert [stream.landing(t) for t in range(1, 12)] == [[], [], [0], [], [], [1], [], [0], [], [], [1]]
    assert [t for t in range(1, 12) if stream.due(t)] == [2, 3, 5, 6, 7, 8, 10, 11]
