"""Reaching the Lookahead through whatever handle a training framework gives out.

transformers' `trainer.optimizer` and accelerate's prepared optimizer are AcceleratedOptimizers (the
optimizer under `.optimizer`); Lightning's `self.optimizers()` is a LightningOptimizer (under
`._optimizer`, and itself an instance of the wrapped class:
see [NOTE: one state for every handle] in lookahead_fused/shared_state.py). `lookahead_of` walks such a chain down to the Lookahead.
"""

from __future__ import annotations

from .optimizer import Lookahead

WRAPPED_ATTRIBUTES = ("optimizer", "_optimizer")  # where the wrappers we know keep what they wrap


def lookahead_of(handle) -> Lookahead:
    """The Lookahead (or LookaheadAdamW) that `handle` is or wraps, through any chain of wrappers
    that keep the wrapped optimizer as `.optimizer` or `._optimizer`. TypeError if there is none."""
    chain = []
    current = handle
    while True:
        if isinstance(current, Lookahead):
            return current._shared.lookahead
        chain.append(type(current).__name__)
        attributes = getattr(current, "__dict__", {})  # not getattr(current, name): a wrapper may forward reads
        wrapped = next((attributes[name] for name in WRAPPED_ATTRIBUTES if name in attributes), None)
        if wrapped is None or len(chain) > 16:
            raise TypeError(
                f"lookahead_of: no Lookahead in {' -> '.join(chain)}; pass the Lookahead or LookaheadAdamW, or a "
                "wrapper that holds it as .optimizer or ._optimizer (accelerate, transformers, Lightning)"
            )
        current = wrapped

