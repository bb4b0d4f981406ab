"""The GPU validation's import check (.ci/gpu_validation.py): print what this machine runs as one
JSON line after MARKER, then require the backends a GPU run (cuda, triton) or a rehearsal (cpu) needs."""

import json
import platform

import torch

import lookahead_fused
import lookahead_fused._C

MARKER = "validation-env: "

try:
    import triton

    triton_version = triton.__version__
except ImportError:
    triton_version = None

gpu = torch.cuda.is_available()
env = {
    "device": torch.cuda.get_device_name() if gpu else f"CPU ({platform.processor() or platform.machine()})",
    "capability": ".".join(map(str, torch.cuda.get_device_capability())) if gpu else None,
    "torch": torch.__version__,
    "cuda": torch.version.cuda,
    "triton": triton_version,
    "build": lookahead_fused._C.build_info(),
    "backends": lookahead_fused.available_backends(),
}
print(MARKER + json.dumps(env, default=str))
needed = {"cuda", "triton"} if gpu else {"cpu"}
missing = needed - set(env["backends"])
assert not missing, f"backends missing: {sorted(missing)} ({lookahead_fused.unavailable_backends()})"
print(f"import check passed on {env['device']}: backends {', '.join(env['backends'])}; archs {env['build'].get('cuda_archs')}")
