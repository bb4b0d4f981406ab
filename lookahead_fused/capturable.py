"""capturable=True: what it needs of the params and the inner optimizer, checked when the wrapper is
built (and when a group is added), so a CUDA graph capture does not fail halfway.

The step counter and each alpha then live on the params' device, and every step runs the
step-gated sync (ops.lookahead_sync_on_step_), which decides on the device whether to sync (on the
CPU, where the host reads the counter, only the sync steps run it:
see [NOTE: a gate the host can read] in lookahead_fused/optimizer.py
in optimizer.py).
"""

from __future__ import annotations

import torch

from .adaptive_alpha import ADAPTIVE


def _device_of(params, where: str) -> torch.device | None:
    devices = {p.device for p in params}
    if len(devices) > 1:
        names = ", ".join(sorted(str(d) for d in devices))
        raise ValueError(f"capturable=True needs every param on one device; {where} has params on {names}")
    return devices.pop() if devices else None


def check_capturable_group(optimizer, group: dict, device: torch.device | None, where: str) -> torch.device | None:
    """Raise unless `group` can run in a captured step on `device`; return the group's device."""
    group_device = _device_of(group["params"], where)
    if device is not None and group_device is not None and group_device != device:
        raise ValueError(f"capturable=True needs every param on one device; {where} is on {group_device}, not {device}")
    if group_device is not None and group_device.type == "cuda" and group.get("capturable") is False:
        raise ValueError(
            f"capturable=True needs a capturable inner optimizer: {where} of {type(optimizer).__name__} has "
            f"capturable=False; build it with capturable=True"
        )
    return group_device or device


def capturable_device(optimizer, capturable: bool, alpha) -> torch.device:
    """Where the step counter lives: the CPU, or with capturable=True the params' device."""
    if not capturable:
        return torch.device("cpu")
    if alpha == ADAPTIVE:
        raise ValueError("alpha='adaptive' chooses alpha on the host at each sync; it cannot be capturable")
    device = None
    for g, group in enumerate(optimizer.param_groups):
        device = check_capturable_group(optimizer, group, device, where=f"param group {g}")
    return device or torch.device("cpu")
