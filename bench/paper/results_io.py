"""Where the paper scripts keep what they produce: bench/paper/results/NAME.json and NAME.png."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def save(name: str, data: dict, plot) -> None:
    """Write data as NAME.json and plot(data, path) as NAME.png, and say where."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2))
    plot(data, RESULTS / f"{name}.png")
    print(f"wrote {RESULTS / name}.json and .png")
