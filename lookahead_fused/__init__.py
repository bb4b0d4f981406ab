"""lookahead_fused: the Lookahead optimizer with a fused multi-tensor synchronisation.

    from lookahead_fused import Lookahead
    opt = Lookahead(torch.optim.AdamW(model.parameters(), lr=1e-3), k=5, alpha=0.5)

    from lookahead_fused import LookaheadAdamW   # AdamW and the sync in one fused pass
    opt = LookaheadAdamW(model.parameters(), lr=1e-3, k=5, alpha=0.5)

    lookahead_of(handle)   # the Lookahead behind a framework's wrapper (accelerate, transformers, Lightning)
"""

from . import ops
from .backends import available_backends, unavailable_backends
from .adamw import LookaheadAdamW
from .optimizer import Lookahead
from .handles import lookahead_of

__version__ = "0.1.0"
__all__ = ["Lookahead", "LookaheadAdamW", "lookahead_of", "ops", "available_backends", "unavailable_backends", "__version__"]
