"""A Lightning Callback that validates with the slow weights.

[NOTE: Lightning's validation window] Lightning runs a hook on every callback first, then on the
LightningModule, and puts every ModelCheckpoint after the other callbacks. So this callback's
`on_validation_start` opens the window before the module's, and its `on_validation_end` closes it
before ModelCheckpoint's `on_validation_end` saves and before the module's hook runs: the
checkpoint holds the fast weights as the model and the slow weights as the slow weights. Saves in
`on_train_epoch_end` (`save_on_train_epoch_end=True`) are outside the window. The same window in
the module's own hooks (`with self.optimizers().slow_weights()` from its `on_validation_start` to
its `on_validation_end`) spans ModelCheckpoint's save, which the Lookahead then refuses.
"""

from __future__ import annotations

import contextlib

import torch
from lightning.pytorch import Callback

from ..handles import lookahead_of
from ..optimizer import Lookahead
from .window import SlowWeightsWindow


def _lookaheads(trainer) -> list[Lookahead]:
    found = []
    for optimizer in trainer.optimizers:
        with contextlib.suppress(TypeError):  # not a Lookahead: validated with its own weights
            found.append(lookahead_of(optimizer))
    return found


class SlowWeightsValidation(Callback):
    """Run validation with the slow weights of every Lookahead among the trainer's optimizers in the
    model (the fast ones come back before ModelCheckpoint saves), and, with
    `save_final_model_to=PATH`, save the LightningModule's state_dict with the slow weights there
    (torch.save) at the end of fit.
    See [NOTE: Lightning's validation window] in lookahead_fused/integrations/lightning.py."""

    def __init__(self, save_final_model_to: str | None = None):
        self.save_final_model_to = save_final_model_to
        self._window = SlowWeightsWindow()

    def on_fit_start(self, trainer, pl_module):
        if not _lookaheads(trainer):
            names = ", ".join(type(opt).__name__ for opt in trainer.optimizers) or "none"
            raise TypeError(f"SlowWeightsValidation: no Lookahead among the trainer's optimizers ({names})")

    def on_validation_start(self, trainer, pl_module):
        if trainer.state.fn == "fit":
            self._window.open(_lookaheads(trainer))

    def on_validation_end(self, trainer, pl_module):
        self._window.close()

    def on_exception(self, trainer, pl_module, exception):
        self._window.close()

    def on_fit_end(self, trainer, pl_module):
        if self.save_final_model_to is not None:
            self._window.open(_lookaheads(trainer))
            try:
                torch.save(pl_module.state_dict(), self.save_final_model_to)
            finally:
                self._window.close()
