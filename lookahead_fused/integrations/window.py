"""The slow weights in the params from one framework hook to a later one (a `with` cannot span two
callbacks)."""

from __future__ import annotations

import contextlib


class SlowWeightsWindow:
    """`open(lookaheads)` enters each one's `slow_weights()` (all or none); `close()` leaves them."""

    def __init__(self):
        self._entered = contextlib.ExitStack()
        self.is_open = False

    def open(self, lookaheads) -> None:
        if self.is_open:
            return
        with contextlib.ExitStack() as entering:
            for lookahead in lookaheads:
                entering.enter_context(lookahead.slow_weights())
            self._entered = entering.pop_all()
        self.is_open = True

    def close(self) -> None:
        self.is_open = False
        self._entered.close()
