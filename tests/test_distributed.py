"""Distributed training on the CPU with gloo, 2 processes: DDP keeps the ranks identical and equal to
one process on the whole batch; FSDP2 (fully_shard) keeps the slow weights sharded like their
params, syncs the local shards, and resumes from a torch.distributed.checkpoint bit for bit."""

import os
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from . import distributed_workers as workers

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()) or sys.platform != "linux", reason="needs torch.distributed with gloo"
)

WORLD = 2
STEPS = 7


def _spawn(worker, tmp_path, *extra):
    mp.spawn(worker, args=(WORLD, str(tmp_path / "init"), str(tmp_path), STEPS, *extra), nprocs=WORLD, join=True)


def _one_process_run(kind="lookahead"):
    model = workers.make_model(kind)
    opt = workers.make_optimizer(model, kind)
    workers.train(model, opt, range(1, STEPS + 1))
    return model, opt


def test_ddp_ranks_stay_identical_and_match_one_process(tmp_path):
    _spawn(workers.ddp_worker, tmp_path)
    result = torch.load(os.path.join(tmp_path, "ddp.pt"))
    assert result["identical"], "params or slow weights differ between ranks"
    assert result["step"] == STEPS
    model, _ = _one_process_run()
    for p_ddp, p_one in zip(result["params"], model.parameters()):
        torch.testing.assert_close(p_ddp, p_one.detach(), rtol=1e-9, atol=1e-12)


# Lookahead's per-param state tensors (opt.state[p]) of each kind, every one sharded like its param.
STATE_KEYS = {
    "lookahead": {"slow_param", "slow_momentum", "outer_momentum"},
    "lookahead_adamw": {"slow_param", "slow_momentum", "outer_momentum"},
    workers.COMPACT: {"slow_high", "slow_low", "slow_momentum"},
    workers.COMPACT_MOMENTUM: {"slow_high", "slow_low", "slow_momentum", "outer_momentum"},
    workers.ADAMW_COMPACT_MOMENTUM: {"slow_high", "slow_low", "slow_momentum", "outer_momentum"},
    workers.INT8_MOMENTUM: {"slow_param", "slow_momentum", "outer_momentum"},  # the codes; the scales: below
    workers.ADAMW_INT8_MOMENTUM: {"slow_param", "slow_momentum", "outer_momentum"},
    workers.ADAMW_INT8_DELTA: {"slow_delta", "slow_momentum"},
    workers.ADAMW_INT8_DELTA_MOMENTUM: {"slow_delta", "slow_momentum", "outer_momentum"},
    workers.ADAMW_INT8_DELTA_BF16_MOMENTUM: {"slow_delta", "slow_momentum", "outer_momentum"},
    workers.COMPACT_INT8_MOMENTUM: {"slow_high", "slow_low", "slow_momentum", "outer_momentum"},
    workers.ADAMW_COMPACT_INT8_MOMENTUM: {"slow_high", "slow_low", "slow_momentum", "outer_momentum"},
}
# what each kind that keeps int8 blocks names in its refusal of a layout other than FSDP2's
INT8_OPTION = {workers.INT8_MOMENTUM: "momentum_dtype='int8'", workers.ADAMW_INT8_MOMENTUM: "momentum_dtype='int8'",
               workers.ADAMW_INT8_DELTA: "slow_dtype='int8-delta'",
               workers.ADAMW_INT8_DELTA_MOMENTUM: "slow_dtype='int8-delta'",
               workers.ADAMW_INT8_DELTA_BF16_MOMENTUM: "slow_dtype='int8-delta'",
               workers.COMPACT_INT8_MOMENTUM: "momentum_dtype='int8'",
               workers.ADAMW_COMPACT_INT8_MOMENTUM: "momentum_dtype='int8'"}  # fmt: skip


@pytest.mark.parametrize("kind", workers.KINDS)
def test_fsdp2_shards_the_slow_weights_and_resumes_from_a_distributed_checkpoint(tmp_path, kind):
    _spawn(workers.fsdp2_worker, tmp_path, kind)
    result = torch.load(os.path.join(tmp_path, "fsdp2.pt"))
    assert set(result["sharded_like_param"]) == STATE_KEYS[kind]
    unsharded = [key for key, sharded in result["sharded_like_param"].items() if not sharded]
    assert not unsharded, f"not DTensors with their param's placements: {unsharded}"
    assert result["local_shapes"][0] == (workers.make_model(kind)[0].out_features // WORLD, 8)  # the first weight, row-sharded
    # int8 blocks per shard (the outer momentum's or the int8-delta offsets'): each rank keeps the one block of its
    # largest shard (32 x 8 and 1 x 64 elements)
    blocks_per_param = 2 if kind == workers.ADAMW_INT8_DELTA_MOMENTUM else 1  # the offsets' and the momentum's
    expected_scales = [((WORLD, 1), (1, 1), True)] * 2 * blocks_per_param if kind in workers.INT8_KINDS else []
    assert result["scale_shapes"] == expected_scales
    if kind in workers.INT8_KINDS:
        assert f"{INT8_OPTION[kind]} takes sharded params as FSDP2 shards them (Shard(0) on a 1-D mesh)" in result["layout_refused"]
        assert "laid out as (Shard(dim=1),) on a 1-D mesh" in result["layout_refused"]
    assert "pair 0: only fast is a DTensor; both or neither must be" in result["mixed_refused"]
    assert result["resumed_step"] == result["saved_at"]
    assert result["helper_step"] == result["saved_at"]
    for a, b, c in zip(result["first"], result["second"], result["third"], strict=True):
        assert torch.equal(a, b), "the resumed run left the trajectory"
        assert torch.equal(a, c), "the run resumed through get_state_dict/set_state_dict left the trajectory"
    model, opt = _one_process_run(kind)
    params = list(model.parameters())
    expected = [p.detach() for p in params] + workers.slow_values(opt, params)
    count = len(params)
    gathered = result["first"][:count] + result["first"][-count:]  # the params and the slow weights' values
    # float64: the two halves of the batch summed in another order; float32 rounds those sums, and the
    # compact slow weights keep 2^-15 of each value (see [NOTE: bf16+int8 encoding] in lookahead_fused/bf16_int8.py)
    float64 = workers.model_dtype(kind) == torch.float64
    tolerance = {"rtol": 1e-9, "atol": 1e-12} if float64 else {"rtol": 1e-4, "atol": 1e-5}
    for got, want in zip(gathered, expected, strict=True):
        torch.testing.assert_close(got, want, **tolerance)
