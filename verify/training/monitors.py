"""Per-layer monitors of a GPT built on the zoo, read through hooks on its ResidualStep modules.

What it is for: logging, over training, what the theory talks about — for every hidden state X_0 … X_K
(X_0 = embeddings, X_{k+1} = output of residual step k):

- the three K7 moments ``mean_abs``, ``entrywise_var``, ``datawise_var`` (definitions in verify.engine.moments, not
  repeated here), the largest row norm max_i ‖x_i‖ (what the F-bounds bound) and max |x|;
- the headroom against low-precision formats: max |x| / (largest finite float16 = 65504) and / (largest finite
  bfloat16 ≈ 3.39e38) — a ratio ≥ 1 means the state would overflow that format;
- the adjoint norm ‖∂loss/∂X_k‖_F (the backward recursion's p_k, B3) and, per step, the norm of the gradient of
  its parameters.

A forward pre-hook on step 0 reads X_0, a forward hook on each step reads X_{k+1} and, while gradients are
being recorded, registers a tensor hook that reads ∂loss/∂X_{k+1} during the backward pass. Hooks do nothing
unless a measurement is in progress, so training steps pay nothing for them.

What it is not: a profiler; measurements are made on one fixed monitor batch, separately from training steps,
so that records taken at different times compare the same data.
"""
from __future__ import annotations

import math

import torch

from verify.engine import moments
from verify.engine.zoo import _bmat

FLOAT16_MAX = float(torch.finfo(torch.float16).max)  # 65504
BFLOAT16_MAX = float(torch.finfo(torch.bfloat16).max)  # ≈ 3.39e38


class Monitor:
    """Hooks on ``model.stack.steps`` (a GPT, or anything with a zoo Stack at ``.stack``); ``log`` holds records."""

    def __init__(self, model):
        stack = getattr(model, "stack", None)
        if stack is None or not hasattr(stack, "steps"):
            raise ValueError("model must have a zoo Stack at model.stack")
        self.n_steps = len(stack.steps)
        self.log: list[dict] = []
        self._active = False
        self._states: list[torch.Tensor | None] = [None] * (self.n_steps + 1)
        self._adjoint: list[float] = [math.nan] * (self.n_steps + 1)
        self._handles = [stack.steps[0].register_forward_pre_hook(self._on_input)]
        for k, step in enumerate(stack.steps):
            self._handles.append(step.register_forward_hook(self._make_output_hook(k + 1)))

    # ---- hooks ----------------------------------------------------------------------------------------------
    def _record_state(self, index: int, x: torch.Tensor) -> None:
        self._states[index] = x.detach()
        if x.requires_grad and torch.is_grad_enabled():
            def grad_hook(g, index=index):
                self._adjoint[index] = float(g.detach().double().norm())
            x.register_hook(grad_hook)

    def _on_input(self, module, args):
        if self._active:
            self._record_state(0, args[0])

    def _make_output_hook(self, index: int):
        def hook(module, args, output):
            if self._active:
                self._record_state(index, output)
        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    # ---- measurement ----------------------------------------------------------------------------------------
    def measure(self, model, idx: torch.Tensor, targets: torch.Tensor, step: int | None = None) -> dict:
        """One forward + backward pass on (idx, targets) with hooks active; appends and returns the record.

        The model's parameter gradients are left untouched (they are saved and restored), so a measurement
        can be taken between a training step's backward pass and its optimiser step.
        """
        saved = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
        model.zero_grad(set_to_none=True)
        self._states = [None] * (self.n_steps + 1)
        self._adjoint = [math.nan] * (self.n_steps + 1)
        self._active = True
        try:
            with torch.enable_grad():
                _, loss = model(idx, targets)[:2]
                loss.backward()
        finally:
            self._active = False
        stack = model.stack
        per_step_grad = []
        for s in stack.steps:
            sq = sum(float(p.grad.double().pow(2).sum()) for p in s.parameters() if p.grad is not None)
            per_step_grad.append(math.sqrt(sq))
        for p, g in zip(model.parameters(), saved):
            p.grad = g
        layers = {key: [] for key in ("mean_abs", "entrywise_var", "datawise_var", "row_norm_max", "max_abs")}
        for x in self._states:
            x = x.double()
            for key, value in moments.all_moments(x).items():
                layers[key].append(float(value[0]))
            layers["row_norm_max"].append(float(x.norm(dim=-1).max()))
            layers["max_abs"].append(float(x.abs().max()))
        record = {
            "step": step,
            "loss": float(loss.detach()),
            **layers,
            "adjoint_norm": list(self._adjoint),
            "param_grad_norm": per_step_grad,
            "float16_headroom": [m / FLOAT16_MAX for m in layers["max_abs"]],
            "bfloat16_headroom": [m / BFLOAT16_MAX for m in layers["max_abs"]],
        }
        self._states = [None] * (self.n_steps + 1)
        self.log.append(record)
        return record

    @property
    def last(self) -> dict:
        if not self.log:
            raise ValueError("no measurement has been taken yet")
        return self.log[-1]


def step_activation(step, x: torch.Tensor) -> torch.Tensor:
    """h_k of a pre-LN zoo step: the sublayer's last activation, so that its branch is h_k W_k + b_k.

    MLP: φ(N(x) W₁ + b₁); attention: the concatenated head outputs P^h N(x) W_V^h (before W_O). Used by the
    trained-model bound F6, which ties the output map W_k to E[h_kᵀ p_{k+1}].
    """
    if step.norm_in is None or step.rule not in ("pre", "lns"):
        raise ValueError(f"step must be a pre-LN step (rule 'pre'), got rule {step.rule!r}")
    u = step.norm_in(x)
    if step.in_scale != 1.0:
        u = u * step.in_scale
    sub = step.sublayer
    if step.kind == "mlp":
        z = u @ _bmat(sub.W1, u)
        if sub.b1 is not None:
            z = z + sub.b1.view(sub.b1.shape[0], *([1] * (u.dim() - 2)), -1)
        return sub.phi(z)
    v = sub._heads(u @ _bmat(sub.W_v, u))
    return (sub.probs(u) @ v).transpose(-2, -3).reshape(u.shape)


def output_map(step) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(W_k, b_k): the output map and bias of a step's sublayer (W_O, b_O or W₂, b₂)."""
    sub = step.sublayer
    return (sub.W_o, sub.b_o) if step.kind == "attn" else (sub.W2, sub.b2)
