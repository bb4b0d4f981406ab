"""Lookahead inside Lightning (the real package): the refusal whichever handle entered
slow_weights() (issue 24, item 1), validation with the slow weights under ModelCheckpoint, and a
resume from a checkpoint taken mid-period, bit for bit."""

from __future__ import annotations

import pytest
import torch

lightning = pytest.importorskip("lightning.pytorch")
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402

from lookahead_fused import lookahead_of  # noqa: E402
from lookahead_fused.integrations.lightning import SlowWeightsValidation  # noqa: E402

from .frameworks import (  # noqa: E402
    K, OPTIMIZERS, SAVE_AT, assert_same_end_state, assert_saved_with_slow_weights, build_optimizer, end_state, params_equal,
)  # fmt: skip

BATCHES_PER_EPOCH = SAVE_AT  # a checkpoint at the end of the first epoch is mid-period


def _loader(seed):
    g = torch.Generator().manual_seed(seed)
    data = torch.utils.data.TensorDataset(torch.randn(4 * BATCHES_PER_EPOCH, 6, generator=g), torch.randn(4 * BATCHES_PER_EPOCH, 2, generator=g))
    return torch.utils.data.DataLoader(data, batch_size=4)


class TinyModule(lightning.LightningModule):
    def __init__(self, optimizer_name):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
        self.optimizer_name = optimizer_name
        self.validated_with_slow_weights = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.slow_after_last_step = end_state(self.optimizers())["slow"]

    def validation_step(self, batch, batch_idx):
        self.validated_with_slow_weights.append(params_equal(self.optimizers(), self.slow_after_last_step))
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        decay = [p for n, p in self.named_parameters() if n.endswith("weight")]
        no_decay = [p for n, p in self.named_parameters() if n.endswith("bias")]
        return build_optimizer(self.optimizer_name, [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}])

    def train_dataloader(self):
        return _loader(1)

    def val_dataloader(self):
        return _loader(2)


class ModuleOwnWindow(TinyModule):
    """The usual EMA-style pattern, in the module's own hooks: the window spans ModelCheckpoint's save."""

    def on_validation_start(self):
        self.window = self.optimizers().slow_weights()
        self.window.__enter__()

    def on_validation_end(self):
        self.window.__exit__(None, None, None)


def _trainer(tmp_path, epochs, callbacks=()):
    return lightning.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp_path, callbacks=list(callbacks),
        deterministic=True,
    )  # fmt: skip


def test_a_checkpoint_inside_the_modules_slow_weights_window_is_refused(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_top_k=-1, save_on_train_epoch_end=False)  # in on_validation_end
    module = ModuleOwnWindow("lookahead-adamw")
    with pytest.raises(RuntimeError, match=r"state_dict\(\) inside `with optimizer.slow_weights\(\):`"):
        _trainer(tmp_path, 1, [checkpoint]).fit(module)
    assert not list(tmp_path.glob("*.ckpt"))
    # The refused save left the module's window open: close it here, not in a later test's garbage
    # collection (whose swap back would build a plan there).
    module.window.__exit__(None, None, None)


def test_the_refusal_holds_whichever_handle_entered_the_window(tmp_path):
    seen = {}

    class Probe(TinyModule):
        def on_train_end(self):
            wrapper = self.optimizers()
            lookahead = lookahead_of(wrapper)
            assert type(wrapper) is not type(lookahead) and isinstance(wrapper, type(lookahead))
            fast, slow = end_state(lookahead)["params"], end_state(lookahead)["slow"]
            for entered, called in ((wrapper, lookahead), (lookahead, wrapper), (wrapper, wrapper)):
                with entered.slow_weights():
                    seen[len(seen)] = params_equal(lookahead, slow)
                    for call in (called.state_dict, lambda: called.load_state_dict({}), called.sync_lookahead, lookahead.step):
                        with pytest.raises(RuntimeError, match="inside `with optimizer.slow_weights"):
                            call()
                assert params_equal(lookahead, fast)
            state = wrapper.state_dict()  # through the wrapper: the Lookahead's own, not nested
            assert state["lookahead"]["step"] == lookahead.step_count == BATCHES_PER_EPOCH

    _trainer(tmp_path, 1).fit(Probe("lookahead-adamw"))
    assert list(seen.values()) == [True, True, True]


@pytest.mark.parametrize("optimizer_name", sorted(OPTIMIZERS))
def test_validation_with_slow_weights_and_a_mid_period_resume_are_bitwise(tmp_path, optimizer_name):
    uninterrupted = TinyModule(optimizer_name)
    _trainer(tmp_path / "full", 2, [SlowWeightsValidation()]).fit(uninterrupted)

    first = TinyModule(optimizer_name)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, filename="first", save_on_train_epoch_end=False)
    _trainer(tmp_path / "first", 1, [checkpoint, SlowWeightsValidation()]).fit(first)  # ModelCheckpoint listed first on purpose
    assert first.validated_with_slow_weights and all(first.validated_with_slow_weights)
    assert lookahead_of(first.optimizers()).step_count == SAVE_AT and SAVE_AT % K

    resumed = TinyModule(optimizer_name)  # fresh module and optimizer
    _trainer(tmp_path / "resumed", 2, [SlowWeightsValidation()]).fit(resumed, ckpt_path=tmp_path / "ckpt" / "first.ckpt")
    assert all(resumed.validated_with_slow_weights)
    assert_same_end_state(end_state(resumed.optimizers()), end_state(uninterrupted.optimizers()))


def test_the_final_model_is_saved_with_the_slow_weights(tmp_path):
    module = TinyModule("LookaheadAdamW")
    _trainer(tmp_path, 1, [SlowWeightsValidation(save_final_model_to=tmp_path / "final.pt")]).fit(module)
    assert_saved_with_slow_weights(torch.load(tmp_path / "final.pt"), module.optimizers(), module)


def test_the_callback_refuses_a_trainer_without_a_lookahead(tmp_path):
    class Plain(TinyModule):
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    with pytest.raises(TypeError, match=r"SlowWeightsValidation: no Lookahead among the trainer's optimizers \(SGD\)"):
        _trainer(tmp_path, 1, [SlowWeightsValidation()]).fit(Plain("LookaheadAdamW"))
