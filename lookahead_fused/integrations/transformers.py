"""A transformers TrainerCallback that evaluates with the slow weights.

[NOTE: the Trainer's evaluation window] The Trainer has no hook before an evaluation. After each
step (and epoch) its callbacks run `on_step_end` (`on_epoch_end`), then `_maybe_log_save_evaluate`
logs, evaluates if `control.should_evaluate` (ending with `on_evaluate`) and then saves if
`control.should_save`. So the window opens at the end of `on_step_end` / `on_epoch_end` when an
evaluation is due (DefaultFlowCallback, which decides it, runs before any user callback) and closes
in `on_evaluate`, before the checkpoint is saved: a checkpoint is never taken with the slow weights
in the params (inside the window the Lookahead would refuse `state_dict()` anyway). If something
after this callback cancels the evaluation, the window closes at the next `on_step_begin` or at
`on_train_end`. Evaluations the user starts (`trainer.evaluate()`) are theirs to wrap:
`with lookahead_of(trainer.optimizer).slow_weights(): trainer.evaluate()`.
"""

from __future__ import annotations

from transformers import TrainerCallback

from ..handles import lookahead_of
from .window import SlowWeightsWindow


class SlowWeightsEvaluation(TrainerCallback):
    """Run the Trainer's evaluations with the slow weights in the model (the fast ones come back
    before anything is saved), and, with `save_final_model_to=DIR`, save the final model with the
    slow weights there (`model.save_pretrained(DIR)`) at the end of training.
    See [NOTE: the Trainer's evaluation window] in lookahead_fused/integrations/transformers.py."""

    def __init__(self, save_final_model_to: str | None = None):
        self.save_final_model_to = save_final_model_to
        self._window = SlowWeightsWindow()

    def _open_if_evaluating(self, control, optimizer) -> None:
        if control.should_evaluate:
            self._window.open([lookahead_of(optimizer)])

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        self._open_if_evaluating(control, optimizer)

    def on_epoch_end(self, args, state, control, optimizer=None, **kwargs):
        self._open_if_evaluating(control, optimizer)

    def on_evaluate(self, args, state, control, **kwargs):
        self._window.close()

    def on_step_begin(self, args, state, control, **kwargs):
        self._window.close()

    def on_train_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        self._window.close()
        if self.save_final_model_to is not None:
            with lookahead_of(optimizer).slow_weights():
                model.save_pretrained(self.save_final_model_to)
