"""Lookahead inside transformers' Trainer (the real package, a tiny GPT-2 built from a config):
the optimizer class from optimizer_cls_and_kwargs keeps the Trainer's weight-decay groups,
lookahead_of reaches through trainer.optimizer (an AcceleratedOptimizer), evaluation runs with the
slow weights, and a resume from a checkpoint taken mid-period ends bit for bit as an uninterrupted run."""

from __future__ import annotations

import pytest
import torch

from .frameworks import K, OPTIMIZERS, SAVE_AT, assert_same_end_state, assert_saved_with_slow_weights, end_state, params_equal

transformers = pytest.importorskip("transformers")
from accelerate.optimizer import AcceleratedOptimizer  # noqa: E402

from lookahead_fused import lookahead_of  # noqa: E402
from lookahead_fused.integrations.transformers import SlowWeightsEvaluation  # noqa: E402

STEPS = 12  # past the sync at 10, ending mid-period


def _dataset():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 32, (4 * STEPS, 8), generator=g)
    return [{"input_ids": row, "labels": row} for row in ids]


def _model():
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=32, n_positions=8, n_embd=16, n_layer=1, n_head=2,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


class EvaluationProbe(transformers.TrainerCallback):
    """Records, at every evaluation batch, whether the model holds the slow weights of the last step."""

    def __init__(self):
        self.seen = []

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        if not control.should_evaluate:  # before the window opens (this probe runs after SlowWeightsEvaluation)
            self.slow = end_state(optimizer)["slow"]

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.slow = end_state(optimizer)["slow"]

    def on_prediction_step(self, args, state, control, optimizer=None, **kwargs):
        self.seen.append(params_equal(optimizer, self.slow))


def _trainer(tmp_path, optimizer_name, callbacks=(), **overrides):
    settings = dict(
        output_dir=str(tmp_path), max_steps=STEPS, per_device_train_batch_size=4, per_device_eval_batch_size=4,
        save_strategy="steps", save_steps=SAVE_AT, eval_strategy="steps", eval_steps=SAVE_AT, logging_strategy="no",
        report_to="none", use_cpu=True, seed=0, weight_decay=0.1, disable_tqdm=True,
    )  # fmt: skip
    settings.update(overrides)
    return transformers.Trainer(
        model=_model(), args=transformers.TrainingArguments(**settings), train_dataset=_dataset(),
        eval_dataset=_dataset()[:8], optimizer_cls_and_kwargs=OPTIMIZERS[optimizer_name], callbacks=list(callbacks),
    )  # fmt: skip


@pytest.mark.parametrize("optimizer_name", sorted(OPTIMIZERS))
def test_evaluation_with_slow_weights_and_a_mid_period_resume_are_bitwise(tmp_path, optimizer_name):
    probe = EvaluationProbe()
    uninterrupted = _trainer(tmp_path / "full", optimizer_name, [SlowWeightsEvaluation(), probe])
    uninterrupted.train()
    assert probe.seen and all(probe.seen)  # evaluated at step 7, mid-period: slow != fast
    assert isinstance(uninterrupted.optimizer, AcceleratedOptimizer)
    with pytest.raises(AttributeError):
        uninterrupted.optimizer.slow_weights  # noqa: B018  (why lookahead_of exists)
    assert lookahead_of(uninterrupted.optimizer).step_count == STEPS and SAVE_AT % K

    resumed = _trainer(tmp_path / "resumed", optimizer_name, [SlowWeightsEvaluation()])  # fresh model and optimizer
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / f"checkpoint-{SAVE_AT}"))
    assert_same_end_state(end_state(resumed.optimizer), end_state(uninterrupted.optimizer))


def test_the_optimizer_class_keeps_the_trainers_weight_decay_groups(tmp_path):
    trainer = _trainer(tmp_path, "lookahead-adamw", max_steps=1, eval_strategy="no", save_strategy="no")
    trainer.train()
    lookahead = lookahead_of(trainer.optimizer)
    assert type(lookahead.optimizer) is torch.optim.AdamW and lookahead.k == K
    decay, no_decay = lookahead.param_groups
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)
    names = {p: n for n, p in trainer.model.named_parameters()}
    assert all("bias" in names[p] or "ln" in names[p] for p in no_decay["params"])
    assert all(names[p].endswith("weight") and "ln" not in names[p] for p in decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(names)


def test_the_final_model_is_saved_with_the_slow_weights(tmp_path):
    trainer = _trainer(tmp_path, "LookaheadAdamW", [SlowWeightsEvaluation(save_final_model_to=str(tmp_path / "final"))],
                       max_steps=SAVE_AT, eval_strategy="no", save_strategy="no")  # fmt: skip
    trainer.train()
    saved = transformers.GPT2LMHeadModel.from_pretrained(str(tmp_path / "final")).state_dict()
    assert_saved_with_slow_weights(saved, trainer.optimizer, trainer.model)
