"""The state that every handle of one Lookahead sees: the optimizer itself and the wrappers that
training frameworks put around it.

[NOTE: one state for every handle] Lightning's `LightningOptimizer` becomes, on the fly, a subclass
of both itself and the wrapped optimizer's class, and forwards the attribute reads it cannot answer
to the wrapped optimizer (a wrapper that copies the wrapped `__dict__` instead holds the same
objects, and is served the same way). So `lightning_optimizer.slow_weights()` runs Lookahead's code with `self` the wrapper: an
attribute assigned there stays on the wrapper, and its `self.optimizer` is the Lookahead, not the
inner optimizer. Two rules make every handle behave as the Lookahead:

- What the refusals read lives in one `SharedState` created in `Lookahead.__init__`: every handle
  reads the same object, so `step()` and `state_dict()` refuse inside `slow_weights()` whichever
  handle entered it.
- The methods that assign on `self` or reach the inner optimizer (`slow_weights`, `sync_lookahead`,
  `state_dict`, `load_state_dict`, `add_param_group`, `init_state`) are `@on_the_lookahead`: called
  through such a wrapper they run on the Lookahead itself (`SharedState.lookahead`).

`step()` is not rerouted: it is the hot path, and the wrappers step the wrapped optimizer
themselves (LightningOptimizer.step through the strategy, accelerate's AcceleratedOptimizer.step
through `.optimizer`). Its refusal reads the shared flag, one attribute more than a flag of its
own and one method call less than before (bench/RESULTS.md, issue 24).
"""

from __future__ import annotations

import functools


class SharedState:
    """The Lookahead behind every handle and whether its params hold the slow weights now."""

    __slots__ = ("lookahead", "in_slow_weights")

    def __init__(self, lookahead):
        self.lookahead = lookahead
        self.in_slow_weights = False


def on_the_lookahead(method):
    """Run `method` with `self` the Lookahead itself, also when called through a wrapper subclass."""

    @functools.wraps(method)
    def on_the_lookahead(self, *args, **kwargs):
        return method(self._shared.lookahead, *args, **kwargs)

    return on_the_lookahead
