"""Numbers that kernels read from device memory (an alpha), as 0-d tensors made once per
(value, dtype, device): a host-to-device copy on every call would cost a transfer, and is not
allowed while a CUDA graph is being captured. The cache is bounded (alpha="adaptive" makes a new
value every sync); a tensor that a captured graph reads is kept for the life of the process, since
the graph holds its address."""

from __future__ import annotations

from collections import OrderedDict

import torch

CACHED = 16
_cache: OrderedDict = OrderedDict()  # (value, dtype, device) -> tensor, least recently used first
_captured: list = []


def device_scalar(value: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    key = (value, dtype, device)
    tensor = _cache.get(key)
    if tensor is None:
        tensor = _cache[key] = torch.tensor(value, dtype=dtype, device=device)
        if len(_cache) > CACHED:
            _cache.popitem(last=False)
    else:
        _cache.move_to_end(key)
    if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        _captured.append(tensor)
    return tensor
