"""The one test matrix that the contract, step-gate, property and GPU tests share: the dtype pairs
(derived from the contract), sizes, storage offsets and alphas, every (device, backend) available
in this run, and the builders and the float64 check of a synced pair list."""

from __future__ import annotations

import os

import torch

from lookahead_fused.backends import backends_for_device
from lookahead_fused.backends.reference import momentum_sync_float64, sync_float64
# noqa: F401  (the one Python list: see [NOTE: dtype list] in csrc/table.h)
from lookahead_fused.contract import DTYPE_PAIRS
SIZES = [0, 1, 7, 4097, 65537, 278011]  # empty, one element, odd, over one vector step, over one CPU chunk
OFFSETS = [0, 1, 3]  # elements into a buffer: aligned, and two ways of missing a 16-byte boundary
ALPHAS = [0.0, 0.3, 0.5, 0.7, 1.0]  # the exact ends, both sides of the two-sided lerp, its switch
MOMENTA = [(0.0, False), (0.5, False), (0.9, True)]  # (mu, nesterov): mu = 0 is the plain sync bit for bit
# LOOKAHEAD_FUSED_TEST_MATRIX=small keeps what decides which memory a kernel touches (every dtype pair;
# empty, a tail alone, a vector body with a head and a tail; aligned and misaligned) and one alpha and
# momentum: the matrix that compute-sanitizer, which slows every launch a hundredfold, runs
# (.ci/gpu_validation.py).
MATRIX = os.environ.get("LOOKAHEAD_FUSED_TEST_MATRIX", "full")
if MATRIX == "small":
    SIZES, OFFSETS, ALPHAS, MOMENTA = [0, 7, 4097], [0, 1], [0.7], [(0.9, True)]
elif MATRIX != "full":
    raise ValueError(f"LOOKAHEAD_FUSED_TEST_MATRIX must be 'full' or 'small', got {MATRIX!r}")


def sizes_for(device_backend: tuple[str, str]) -> list[int]:
    """The tensor sizes a (device, backend) runs the matrix on.

    [NOTE: interpreter sizes] Triton's interpreter (the Triton backend on the CPU, without a GPU) runs
    a kernel program by program in numpy, so a test's time grows with its elements: 278011 elements,
    there to span many of the CUDA kernel's chunks, made most of the CPU run's time, and cover nothing
    the interpreter's 8192-element chunks do not already cover at 65537 (9 chunks over its 3
    programs, so they stride). Compiled on a GPU, the Triton backend runs every size."""
    device, backend = device_backend
    if backend == "triton" and device == "cpu":
        return [n for n in SIZES if n <= 65537]
    return SIZES


def dtype_id(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def backends_under_test(device: str) -> list[str]:
    """"auto" and each backend available for `device`; LOOKAHEAD_FUSED_TEST_BACKENDS (a comma list)
    narrows them (.ci/sanitize-cpu keeps "auto,cpu": the sanitizers watch the extension only)."""
    names = ["auto", *backends_for_device(device)]
    only = os.environ.get("LOOKAHEAD_FUSED_TEST_BACKENDS")
    return [name for name in names if only is None or name in only.split(",")]


def device_backends() -> list[tuple[str, str]]:
    """Every (device, backend) this run can use: backends_under_test on the CPU and, when there is
    one, on the CUDA GPU (where the Triton backend is compiled, not interpreted)."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return [(device, backend) for device in devices for backend in backends_under_test(device)]


def ulp(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The spacing of `dtype`'s floats at |x| (float64 tensor), subnormals included."""
    info = torch.finfo(dtype)
    _, exponent = torch.frexp(x.abs())
    spacing = info.eps * torch.pow(2.0, (exponent - 1).double())
    return torch.clamp(spacing, min=info.tiny * info.eps)


def random_values(numel, dtype, generator):
    """Values over six decades, some equal in fast and slow, all finite in every dtype above."""
    magnitude = torch.pow(10.0, torch.empty(numel, dtype=torch.float64).uniform_(-3, 3, generator=generator))
    return (torch.randn(numel, generator=generator, dtype=torch.float64) * magnitude).to(dtype)


def make_pair_lists(sizes, fast_dtype, slow_dtype, seed=0, offset=0, device="cpu"):
    """fast and slow tensors of the given sizes on `device`; `offset` elements into a buffer breaks
    16-byte alignment."""
    g = torch.Generator().manual_seed(seed)
    fast, slow = [], []
    for n in sizes:
        f = torch.empty(n + offset, dtype=fast_dtype, device=device)[offset:]
        s = torch.empty(n + offset, dtype=slow_dtype, device=device)[offset:]
        f.copy_(random_values(n, fast_dtype, g))
        s.copy_(random_values(n, slow_dtype, g))
        if n > 2:
            s[: n // 3] = f[: n // 3].to(slow_dtype)  # fast == slow where the weights did not move
        fast.append(f)
        slow.append(s)
    return fast, slow


def check_against_contract(fast_before, slow_before, fast, slow, alpha):
    """The pairs after a sync (any device) against the float64 evaluation of the contract."""
    for i, (f0, s0, f, s) in enumerate(zip(fast_before, slow_before, fast, slow)):
        f0, s0, f, s = (t.detach().cpu() for t in (f0, s0, f, s))
        assert torch.equal(f, s.to(f.dtype)), f"pair {i}: fast != slow cast to fast's dtype"
        if alpha == 0.0:
            assert torch.equal(s, s0), f"pair {i}: alpha=0 changed slow"
        elif alpha == 1.0:
            assert torch.equal(s, f0.to(s.dtype)), f"pair {i}: alpha=1 did not make slow the old fast"
        else:
            expected = sync_float64(f0, s0, alpha)
            bound = 2 * ulp(torch.maximum(f0.double().abs(), s0.double().abs()), s.dtype)
            error = (s.double() - expected).abs()
            worst = (error / bound).max().item() if error.numel() else 0.0
            assert worst <= 1.0, f"pair {i}: error reaches {worst:.2f} x the 2-ulp bound"


def check_momentum_against_contract(fast_before, slow_before, momentum_before, fast, slow, momentum, alpha, mu, nesterov):
    """The triples after a momentum sync against its float64 evaluation
    (see [NOTE: momentum sync] in csrc/element_math.h): slow
    within 8 ulp and momentum within 4 ulp (of the state dtype) of the largest magnitude involved,
    plus one ulp of the momentum's dtype when it is narrower (a bfloat16 momentum beside float32 slow
    weights is rounded as stored, and Nesterov's target reads it rounded); fast == slow cast exactly."""
    for i, tensors in enumerate(zip(fast_before, slow_before, momentum_before, fast, slow, momentum)):
        f0, s0, m0, f, s, m = (t.detach().cpu() for t in tensors)
        assert torch.equal(f, s.to(f.dtype)), f"pair {i}: fast != slow cast to fast's dtype"
        expected_slow, expected_momentum = momentum_sync_float64(f0, s0, m0, alpha, mu, nesterov)
        target = f0.double() + mu * (expected_momentum if nesterov else m0.double())
        magnitude = torch.stack([t.double().abs() for t in (f0, s0, m0, expected_momentum, target)]).amax(0)
        for name, actual, expected, ulps in (("slow", s, expected_slow, 8), ("momentum", m, expected_momentum, 4)):
            error = (actual.double() - expected).abs()
            bound = ulps * ulp(magnitude, s.dtype) + (ulp(magnitude, m.dtype) if m.dtype != s.dtype else 0.0)
            worst = (error / bound).max().item() if error.numel() else 0.0
            assert worst <= 1.0, f"pair {i}: {name} error reaches {worst:.2f} x the {ulps}-ulp bound"
