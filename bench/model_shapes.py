"""Parameter shapes of real models, written out from their architectures (no downloads)."""

from __future__ import annotations


def resnet50() -> list[tuple[int, ...]]:
    """torchvision's resnet50: 25,557,032 params in 161 tensors (convs, batch-norm weight/bias, fc)."""
    shapes = [(64, 3, 7, 7), (64,), (64,)]
    inplanes = 64
    for planes, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for block in range(blocks):
            shapes += [(planes, inplanes, 1, 1), (planes,), (planes,)]
            shapes += [(planes, planes, 3, 3), (planes,), (planes,)]
            shapes += [(planes * 4, planes, 1, 1), (planes * 4,), (planes * 4,)]
            if block == 0:
                shapes += [(planes * 4, inplanes, 1, 1), (planes * 4,), (planes * 4,)]
            inplanes = planes * 4
    return shapes + [(1000, 2048), (1000,)]


def gpt2_small() -> list[tuple[int, ...]]:
    """GPT-2 small (HF layout): 124,439,808 params in 148 tensors."""
    d, vocab, context, layers = 768, 50257, 1024, 12
    shapes = [(vocab, d), (context, d)]
    for _ in range(layers):
        shapes += [(d,), (d,), (d, 3 * d), (3 * d,), (d, d), (d,), (d,), (d,), (d, 4 * d), (4 * d,), (4 * d, d), (d,)]
    return shapes + [(d,), (d,)]


def decoder_1p3b() -> list[tuple[int, ...]]:
    """A 1.3B-parameter decoder (GPT-3 XL sizes: d=2048, 24 layers, tied embeddings): 1,315,723,264 params."""
    d, vocab, context, layers = 2048, 50257, 2048, 24
    shapes = [(vocab, d), (context, d)]
    for _ in range(layers):
        shapes += [(d,), (d,), (3 * d, d), (3 * d,), (d, d), (d,), (d,), (d,), (4 * d, d), (4 * d,), (d, 4 * d), (d,)]
    return shapes + [(d,), (d,)]


def many_small(count: int = 2000, numel: int = 4096) -> list[tuple[int, ...]]:
    """The launch-bound case: many small tensors."""
    return [(numel,)] * count


MODELS = {"resnet50": resnet50, "gpt2-small": gpt2_small, "decoder-1.3b": decoder_1p3b, "2000x4096": many_small}
