"""`Lookahead.wrapping(inner_class, **options)`: a Lookahead class built as `cls(params, **kwargs)`.

transformers' `optimizer_cls_and_kwargs=(cls, kwargs)` (and other trainers that take an optimizer
class) call `cls(param_groups, **kwargs)` with their own param groups (the weight-decay split). The
class made here passes the params and every keyword of that call to the inner optimizer's class and
wraps the result with the Lookahead options given to `wrapping`: the options are fixed when the
class is made, the inner optimizer's arguments come with each call. It is a subclass of Lookahead
(hence of torch.optim.Optimizer), which is how transformers tells an optimizer class from a factory
function, whose call would not get the param groups.
"""

from __future__ import annotations

import inspect

from torch.optim import Optimizer


def wrapping_class(lookahead_class: type, inner_class: type, options: dict) -> type:
    """A subclass of `lookahead_class` whose `__init__(params, **inner_kwargs)` is
    `lookahead_class(inner_class(params, **inner_kwargs), **options)`; checked before it is made."""
    if not (isinstance(inner_class, type) and issubclass(inner_class, Optimizer)):
        raise TypeError(f"Lookahead.wrapping: inner_class must be a torch.optim.Optimizer class, got {inner_class!r}")
    if issubclass(inner_class, lookahead_class):
        raise TypeError(f"Lookahead.wrapping: {inner_class.__name__} is a Lookahead already; wrap the inner optimizer once")
    known = inspect.signature(lookahead_class.__init__).parameters
    unknown = sorted(set(options) - set(known) - {"self", "optimizer"})
    if unknown:
        raise TypeError(
            f"Lookahead.wrapping: unknown Lookahead option(s) {', '.join(unknown)}; the inner optimizer's arguments "
            f"(lr, weight_decay, ...) come with each call of the class: Lookahead.wrapping({inner_class.__name__}, "
            f"k=5)(params, lr=1e-3)"
        )

    def __init__(self, params, **inner_kwargs):
        lookahead_class.__init__(self, inner_class(params, **inner_kwargs), **options)

    name = f"Lookahead[{inner_class.__name__}]"
    return type(name, (lookahead_class,), {"__init__": __init__, "__qualname__": name, "__doc__": wrapping_class.__doc__})
