"""A small character-level language model on text that ships with Python: the task of the quality
studies that need more than the digits MLP, with no download.

The corpus is the standard library's own sources: the .py files directly in the folder of the
`os` module, in name order, read as bytes and concatenated up to CORPUS_BYTES; the last tenth is
the validation text. The model is a 2-layer causal transformer (width 64, 4 heads, context 64) over
the 256 byte values. The corpus differs between Python versions, so a study records the version.
"""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path

import torch

CORPUS_BYTES = 2 * 2**20
CONTEXT, WIDTH, HEADS, LAYERS = 64, 64, 4, 2
VALIDATION_BATCHES, BATCH = 16, 32


def corpus() -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(train bytes, validation bytes, where they came from) as uint8 tensors."""
    folder = Path(os.__file__).parent
    chunks, total = [], 0
    for path in sorted(folder.glob("*.py")):
        chunks.append(path.read_bytes())
        total += len(chunks[-1])
        if total >= CORPUS_BYTES:
            break
    text = torch.frombuffer(bytearray(b"".join(chunks)[:CORPUS_BYTES]), dtype=torch.uint8)
    split = len(text) * 9 // 10
    source = {"python": platform.python_version(), "folder": str(folder), "files": len(chunks), "bytes": len(text)}
    return text[:split], text[split:], source


class CharTransformer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(256, WIDTH)
        self.position = torch.nn.Parameter(torch.randn(CONTEXT, WIDTH) * 0.02)
        layer = torch.nn.TransformerEncoderLayer(WIDTH, HEADS, 4 * WIDTH, dropout=0.0, batch_first=True,
                                                 norm_first=True)  # fmt: skip
        self.blocks = torch.nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        self.norm = torch.nn.LayerNorm(WIDTH)
        self.head = torch.nn.Linear(WIDTH, 256)
        self.register_buffer("causal", torch.nn.Transformer.generate_square_subsequent_mask(CONTEXT))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens) + self.position[: tokens.shape[1]]
        h = self.blocks(h, mask=self.causal[: tokens.shape[1], : tokens.shape[1]], is_causal=True)
        return self.head(self.norm(h))


def windows(text: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-byte targets of the CONTEXT-long windows at `starts`."""
    idx = starts[:, None] + torch.arange(CONTEXT + 1)
    chunk = text[idx].long()
    return chunk[:, :-1], chunk[:, 1:]


def loss_on(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())


def validation_windows(val: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same VALIDATION_BATCHES * BATCH windows for every run, evenly spaced over the text."""
    starts = torch.linspace(0, len(val) - CONTEXT - 2, VALIDATION_BATCHES * BATCH).long()
    return windows(val, starts)


@torch.no_grad()
def validation_loss(model: torch.nn.Module, val_windows) -> float:
    inputs, targets = val_windows
    losses = [loss_on(model, x, y).item() for x, y in zip(inputs.split(BATCH), targets.split(BATCH))]
    loss = sum(losses) / len(losses)
    return loss if math.isfinite(loss) else float("inf")


def study_data() -> tuple[tuple, dict]:
    """(data for train(): the training bytes and the validation windows, where the corpus came from)."""
    train_text, val, source = corpus()
    return (train_text, validation_windows(val)), source


def lookahead_adamw(lr: float, k: int, alpha: float, **lookahead_options):
    """A make_optimizer for train(): Lookahead(AdamW(lr, weight decay 0.01), k, alpha, **lookahead_options)."""
    from lookahead_fused import Lookahead

    return lambda params: Lookahead(torch.optim.AdamW(params, lr=lr, weight_decay=0.01), k=k, alpha=alpha,
                                    **lookahead_options)  # fmt: skip


def train(make_optimizer, steps: int, every: int, data, seed: int, after_step=None) -> list[float]:
    """Validation loss every `every` steps. make_optimizer(params) builds the optimizer; one with
    slow_weights() (Lookahead) is evaluated with its slow weights. after_step(opt) runs after each step."""
    train_text, val_windows = data
    torch.manual_seed(seed)
    model = CharTransformer()
    opt = make_optimizer(model.parameters())
    g = torch.Generator().manual_seed(seed)
    curve = []
    for step in range(1, steps + 1):
        starts = torch.randint(0, len(train_text) - CONTEXT - 1, (BATCH,), generator=g)
        opt.zero_grad()
        loss_on(model, *windows(train_text, starts)).backward()
        opt.step()
        if after_step is not None:
            after_step(opt)
        if step % every == 0:
            if hasattr(opt, "slow_weights"):
                with opt.slow_weights():
                    curve.append(validation_loss(model, val_windows))
            else:
                curve.append(validation_loss(model, val_windows))
    return curve
