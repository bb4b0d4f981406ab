"""The path of one sync step is the one docs/design.md ("The path of one sync step") lists: the
Python files a steady-state sync step of Lookahead runs through on the CPU, in order, each entered
once; and the held launches are gathered again exactly when what they hold changed."""

import os
import sys

import pytest
import torch

import lookahead_fused
from lookahead_fused import Lookahead, LookaheadAdamW

PACKAGE = os.path.dirname(lookahead_fused.__file__)
DOCUMENTED_PATH = ["step_wrapper.py", "optimizer.py", "sync.py"]  # then the extension's held sync (csrc/)


def files_entered(fn) -> list[str]:
    """The package's files in the order their functions are called, a repeat of the previous one dropped."""
    entered = []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename.startswith(PACKAGE):
            name = os.path.relpath(frame.f_code.co_filename, PACKAGE).replace(os.sep, "/")
            if not entered or entered[-1] != name:
                entered.append(name)

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return entered


def _params(count=6):
    params = [torch.nn.Parameter(torch.randn(3, 4)) for _ in range(count)]
    for p in params:
        p.grad = torch.ones_like(p)
    return params


@pytest.mark.parametrize("outer_momentum", [0.0, 0.9])
def test_a_sync_step_enters_each_documented_file_once_in_order(outer_momentum):
    pytest.importorskip("lookahead_fused._C")
    params = _params()
    opt = Lookahead(torch.optim.SGD(params, lr=0.1), k=1, outer_momentum=outer_momentum, backend="cpu")
    opt.step()
    entered = files_entered(opt.step)
    # the check before the inner step, then the launch after it, each from sync.py into the extension
    assert entered == DOCUMENTED_PATH


@pytest.mark.parametrize("outer_momentum", [0.0, 0.9])
def test_the_first_sync_step_checks_and_launches_through_the_backend(outer_momentum):
    pytest.importorskip("lookahead_fused._C")
    opt = Lookahead(torch.optim.SGD(_params(), lr=0.1), k=1, outer_momentum=outer_momentum, backend="cpu")
    entered = files_entered(opt.step)
    assert entered[:3] == DOCUMENTED_PATH and entered.count("backends/native.py") >= 2


def test_lookahead_adamw_adds_its_own_files_only():
    pytest.importorskip("lookahead_fused._C")
    opt = LookaheadAdamW(_params(), k=1, backend="cpu")
    opt.step()
    entered = set(files_entered(opt.step))
    assert entered - set(DOCUMENTED_PATH) <= {"adamw.py", "ops.py", "contract.py", "sharded.py", "backends/__init__.py",
                                              "backends/native.py"}  # fmt: skip


def test_held_launches_follow_every_change_of_what_they_hold():
    params = _params(4)
    opt = Lookahead(torch.optim.SGD(params[:3], lr=0.1), k=1)
    first = opt._sync.launches()
    assert opt._sync.launches() is first  # nothing changed: held
    opt.param_groups[0]["lookahead_alpha"] = 0.25
    by_alpha = opt._sync.launches()
    assert by_alpha is not first and [launch.alpha for launch in by_alpha] == [0.25]
    opt.add_param_group({"params": [params[3]]})
    grown = opt._sync.launches()
    assert sum(len(launch.fused[0]) for launch in grown) == 4
    opt.load_state_dict(opt.state_dict())
    reloaded = opt._sync.launches()
    assert reloaded is not grown
    assert all(s is opt.state[p]["slow_param"] for launch in reloaded for p, s in zip(*launch.fused[:2]))


def test_a_param_given_another_tensorimpl_is_synced_as_it_is_now(backend):
    # torch.utils.swap_tensors (module.to() and load_state_dict swap params so with
    # torch.__future__.set_swap_module_params_on_conversion) keeps the Python object, not the tensor
    params = _params(3)
    opt = Lookahead(torch.optim.SGD(params, lr=0.5), k=1, alpha=0.5, backend=backend)
    opt.step()
    for p in params:
        torch.utils.swap_tensors(p, torch.nn.Parameter(p.detach() + 4.0))
        p.grad = torch.ones_like(p)
    slow_before = [opt.state[p]["slow_param"].clone() for p in params]
    fast_after_inner = [p.detach() - 0.5 for p in params]
    opt.step()
    for p, slow, fast in zip(params, slow_before, fast_after_inner):
        expected = slow + 0.5 * (fast - slow)
        torch.testing.assert_close(opt.state[p]["slow_param"], expected)
        assert torch.equal(p.detach(), opt.state[p]["slow_param"])
