"""Test helpers: a small least-squares problem and Algorithm 1 written out independently."""

from __future__ import annotations

import torch


def make_params(dtype=torch.float64, seed=0, shapes=((3, 4), (3,))):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)) for shape in shapes]


def clone_params(params):
    return [torch.nn.Parameter(p.detach().clone()) for p in params]


def loss_of(params, step, seed=1):
    """A least-squares loss on batch number `step`: the same for every copy of the params."""
    g = torch.Generator().manual_seed(seed * 1000 + step)
    weight, bias = params[0], params[1]
    x = torch.randn(8, weight.shape[1], generator=g, dtype=torch.float64).to(weight.dtype)
    y = torch.randn(8, weight.shape[0], generator=g, dtype=torch.float64).to(weight.dtype)
    loss = ((x @ weight.t() + bias - y) ** 2).mean()
    for p in params[2:]:
        loss = loss + (p.float() ** 2).sum().to(loss.dtype)
    return loss


def set_grads(params, step, seed=1):
    """Set the gradients of loss_of(params, step); return the loss."""
    for p in params:
        p.grad = None
    loss = loss_of(params, step, seed)
    loss.backward()
    return loss


def on_device(tensors, device, offset=0):
    """Copies on `device`; `offset` elements into a fresh buffer breaks 16-byte alignment."""
    out = []
    for t in tensors:
        buffer = torch.empty(t.numel() + offset, dtype=t.dtype, device=device)
        view = buffer[offset:].view(t.shape)
        view.copy_(t)
        out.append(view)
    return out


def snapshot(tensors):
    return [t.detach().clone() for t in tensors]


def assert_bitwise_equal(actual, expected):
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert a.dtype == e.dtype and a.shape == e.shape, f"tensor {i}: {a.dtype}{tuple(a.shape)} vs {e.dtype}{tuple(e.shape)}"
        assert torch.equal(a.detach(), e.detach()), f"tensor {i} differs: max |diff| {(a.double() - e.double()).abs().max()}"


class PlainLookahead:
    """Algorithm 1 of the paper written out directly (float64 arithmetic, per tensor), with the
    pullback modes written out by hand: the oracle the Lookahead class is compared with."""

    def __init__(self, inner, k, alpha, pullback="none", momentum_key=None, slow_dtype=None, outer_momentum=0.0,
                 nesterov=False):  # fmt: skip
        self.inner, self.k, self.alpha, self.pullback, self.key = inner, k, alpha, pullback, momentum_key
        self.slow_dtype = slow_dtype
        self.mu, self.nesterov = outer_momentum, nesterov
        self.count = 0
        self.slow = {}
        self.slow_momentum = {}
        self.outer = {}  # the outer momentum m of each slow weight, float64
        for group in inner.param_groups:
            self._add(group)

    def _add(self, group):
        for p in group["params"]:
            dtype = self.slow_dtype if self.slow_dtype and p.dtype in (torch.float16, torch.bfloat16) else p.dtype
            self.slow[p] = p.detach().clone().to(dtype)

    def add_param_group(self, group):
        self.inner.add_param_group(group)
        self._add(self.inner.param_groups[-1])

    @staticmethod
    def _pull(slow, fast, alpha):
        new = slow.double() + alpha * (fast.double() - slow.double())
        slow.copy_(new)
        fast.copy_(slow)

    def _outer_step(self, p, alpha):
        """SNOO / DiLoCo's outer SGD on the pseudo-gradient, written out: m <- mu m + d;
        u <- d + mu m (Nesterov) or m; slow <- slow + alpha u; fast <- slow."""
        slow = self.slow[p]
        d = p.double() - slow.double()
        m = self.outer.setdefault(p, torch.zeros_like(d))
        m.mul_(self.mu).add_(d)
        u = d + self.mu * m if self.nesterov else m
        slow.copy_(slow.double() + alpha * u)
        p.copy_(slow)

    @torch.no_grad()
    def step(self):
        self.inner.step()
        self.count += 1
        if self.count % self.k == 0:
            self.sync()

    @torch.no_grad()
    def sync(self):
        """The sync of every param (and of the first moments, with pullback), whatever the count."""
        for group in self.inner.param_groups:
            alpha = group.get("lookahead_alpha", self.alpha)
            for p in group["params"]:
                if self.mu:
                    self._outer_step(p, alpha)
                else:
                    self._pull(self.slow[p], p, alpha)
                buffer = self.inner.state.get(p, {}).get(self.key)
                if buffer is None:
                    continue
                if self.pullback == "reset":
                    buffer.zero_()
                elif self.pullback == "pullback":
                    if p not in self.slow_momentum:
                        self.slow_momentum[p] = torch.zeros_like(buffer, dtype=self.slow[p].dtype)
                    self._pull(self.slow_momentum[p], buffer, alpha)


class TimmStyle:
    """timm's Lookahead as it behaves: group counters, slow weights created at the first sync from
    the fast weights then (only for params with a gradient), checkpoint = the inner state_dict."""

    def __init__(self, inner, alpha=0.5, k=6):
        self.inner = inner
        for group in inner.param_groups:
            group.update(lookahead_alpha=alpha, lookahead_k=k, lookahead_step=0)

    @torch.no_grad()
    def step(self):
        self.inner.step()
        for group in self.inner.param_groups:
            group["lookahead_step"] += 1
            if group["lookahead_step"] % group["lookahead_k"] == 0:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    state = self.inner.state[p]
                    slow = state.setdefault("lookahead_slow_buff", p.detach().clone())
                    slow.add_(p - slow, alpha=group["lookahead_alpha"])
                    p.copy_(slow)

    def state_dict(self):
        return self.inner.state_dict()

    def slow_weight(self, p):
        return self.inner.state[p]["lookahead_slow_buff"]


class PytorchOptimizerStyle:
    """pytorch_optimizer's Lookahead (3.x/4.x) as it behaves: slow weights at construction, a group
    counter reset at each sync, p <- lerp(p, slow, 1 - alpha), checkpoint keyed by (group, index)."""

    def __init__(self, inner, k=5, alpha=0.5):
        self.inner, self.k, self.alpha = inner, k, alpha
        self.slow = {}
        for group in inner.param_groups:
            group["counter"] = 0
            for p in group["params"]:
                self.slow[p] = p.detach().clone()

    @torch.no_grad()
    def step(self):
        self.inner.step()
        for group in self.inner.param_groups:
            group["counter"] += 1
            if group["counter"] >= self.k:
                group["counter"] = 0
                for p in group["params"]:
                    p.lerp_(self.slow[p], 1.0 - self.alpha)
                    self.slow[p].copy_(p)

    def state_dict(self):
        lookahead_state = {
            (g, i): {"slow_params": self.slow[p]} for g, group in enumerate(self.inner.param_groups) for i, p in enumerate(group["params"])
        }
        return {"lookahead_state": lookahead_state, "base_optimizer": self.inner.state_dict()}

    def slow_weight(self, p):
        return self.slow[p]


def step_side_by_side(step, *runs):
    """One step of each (optimizer, params) run, all on batch number `step`."""
    for opt, params in runs:
        set_grads(params, step)
        opt.step()


def compiled_beside_eager(eager, params, compiled, twin, steps):
    """Step `eager` (on `params`) and a torch.compile of `compiled.step` (on `twin`) side by side on
    batches 0 .. steps - 1, no recompilation allowed after the second step (the first two create the
    inner state); yields each step's index once both have taken it."""
    import torch._dynamo

    step = torch.compile(compiled.step)
    for i in range(steps):
        set_grads(params, i)
        set_grads(twin, i)
        eager.step()
        with torch._dynamo.config.patch(error_on_recompile=i > 1):
            step()
        yield i


def run(opt, params, steps, first_step=0):
    for step in range(first_step, first_step + steps):
        set_grads(params, step)
        opt.step()

