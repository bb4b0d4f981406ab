"""The wrapper around Lookahead's step(): torch.optim's own, entered only when something needs it.

[NOTE: step wrapper] torch.optim.Optimizer wraps each optimizer class's step() (at its first
instance) in a function that opens a profiler range, torch.autograd.profiler.record_function (two
dispatcher calls, whatever the profiler's state), and runs the step hooks. After a training step
has flushed the caches, that range alone costs a good share of a Lookahead step's own host work
(bench/RESULTS.md, issue 25). Lookahead's step() is wrapped here instead, and marked as hooked so
that torch does not wrap it again: when no profiler runs, nothing is being compiled and no step
hook is registered (on the optimizer or globally), step() runs directly; otherwise it runs through
torch's own wrapper, so that the profiler's "Optimizer.step#<class>.step" range, the hooks (and the
args a pre-hook returns) and a compiled step are exactly torch's. A torch without the global hook
tables this reads always takes torch's wrapper.
"""

from __future__ import annotations

import functools

import torch
import torch.optim.optimizer as torch_optimizer_module
from torch.optim import Optimizer


def _global_hook_tables() -> tuple | None:
    pre = getattr(torch_optimizer_module, "_global_optimizer_pre_hooks", None)
    post = getattr(torch_optimizer_module, "_global_optimizer_post_hooks", None)
    return None if pre is None or post is None else (pre, post)


_GLOBAL_HOOKS = _global_hook_tables()


def _runs_plainly(optimizer: Optimizer) -> bool:
    """Whether nothing needs torch's wrapper around this step (see [NOTE: step wrapper] in lookahead_fused/step_wrapper.py)."""
    return (
        _GLOBAL_HOOKS is not None
        and not torch.compiler.is_compiling()
        and not torch._C._autograd._profiler_enabled()
        and not optimizer._optimizer_step_pre_hooks
        and not optimizer._optimizer_step_post_hooks
        and not _GLOBAL_HOOKS[0]
        and not _GLOBAL_HOOKS[1]
    )


def wrapped_step(step):
    """`step` wrapped as torch.optim wraps it, the wrapper entered only when something needs it
    (see [NOTE: step wrapper] in lookahead_fused/step_wrapper.py)."""
    with_torch_wrapper = Optimizer.profile_hook_step(step)

    @functools.wraps(step)
    def wrapper(self, *args, **kwargs):
        if _runs_plainly(self):
            return step(self, *args, **kwargs)
        return with_torch_wrapper(self, *args, **kwargs)

    wrapper.hooked = True  # torch.optim.Optimizer._patch_step_function wraps a step not so marked
    return wrapper
