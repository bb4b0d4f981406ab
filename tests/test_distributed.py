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
    model = workers.make_model()
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


@pytest.mark.parametrize("kind", ["lookahead", "lookahead_adamw"])
def test_fsdp2_shards_the_slow_weights_and_resumes_from_a_distributed_checkpoint(tmp_path, kind):
    _spawn(workers.fsdp2_worker, tmp_path, kind)
    result = torch.load(os.path.join(tmp_path, "fsdp2.pt"))
    assert result["layouts_match"], "a slow weight is not a DTensor with its param's placements"
    assert result["momenta_sharded"], "a slow momentum is not sharded like its param"
    assert result["outer_sharded"], "an outer momentum is not sharded like its param"
    assert result["local_shapes"][0] == (16 // WORLD, 8)  # the first weight, row-sharded
    assert "pair 0: only fast is a DTensor; both or neither must be" in result["mixed_refused"]
    assert result["resumed_step"] == result["saved_at"]
    assert result["helper_step"] == result["saved_at"]
    for a, b, c in zip(result["first"], result["second"], result["third"]):
        assert torch.equal(a, b), "the resumed run left the trajectory"
        assert torch.equal(a, c), "the run resumed through get_state_dict/set_state_dict left the trajectory"
    model, opt = _one_process_run(kind)
    expected = [p.detach() for p in model.parameters()] + [opt.state[p]["slow_param"] for p in model.parameters()]
    for got, want in zip(result["first"], expected):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
