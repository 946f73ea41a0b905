"""The batched Transformer block zoo: one config drives every norm placement.

What it is for: running many *independent* random Transformer instances as one tensor computation. Every
parameter carries a leading instance dimension ``I`` and every hidden state has shape ``(I, *batch, n, d)``
(``batch`` may be empty), so a hypothesis example or a Monte-Carlo estimate over thousands of instances is a
handful of batched matmuls, not a Python loop. A single trained model is simply ``I = 1`` with a data batch.

What it is not: a fast training kernel or a faithful copy of any library's block. It is the reference
semantics that ``theory/`` is written against, spelled out so every step can be hooked and every weight read.
Within that, the hot path issues few, large kernels (``python -m verify.bench`` measures it against a torch.func
ensemble, a loop and an equal-FLOP bmm): heads and batch elements are one batch dimension of 3-D matmuls, biases
ride in ``baddbmm``, the attention scale and causal mask are fused into the score matmul, LayerNorm centres the
rows explicitly and then runs torch's native kernel (cancellation-safe, fused backward; see
:meth:`BatchedNorm.normalized`) and RMSNorm the native kernel, γ and β are one ``addcmul``, a Δt of 1 is not
multiplied, GELU stays the exact erf form, and the weights' finiteness is checked once per weight change (:meth:`Stack.check_weights`), not on every
call. The matmuls are the same work a torch.func ensemble does, and at d ≥ 64 they are most of it
(``python -m verify.bench --profile``); where per-op overhead dominates (small d and few instances), the optional
:class:`CompiledStack` (``torch.compile``, off by default, eager fallback) removes most of it. The step rules:

    step k (sublayer F_k, step size Δt_k, norm N):
      post      X⁺ = N(X + Δt F(X))
      pre       X⁺ = X + Δt F(N(X))
      peri      X⁺ = X + Δt N_out(F(N_in(X)))
      none      X⁺ = X + Δt F(X)
      outnorm   X⁺ = X + Δt N_out(F(X))
      deepnorm  X⁺ = N(α X + Δt F(X))              (Wang et al. 2022; α = (2L)^{1/4} by default)
      mixln     post in the first ``mixln_post_blocks`` blocks, pre afterwards (Li et al. 2024)
      lns       X⁺ = X + Δt F(N(X) / √ℓ)           (LayerNorm-Scaling, ℓ = 1-based block index)

Conventions (row vectors, as in the theory): attention ``softmax(Q Kᵀ/√d_h) V W_O + b_O`` with
``Q = U W_Q`` etc. per head (heads split the width), MLP ``φ(U W₁ + b₁) W₂ + b₂`` with exact (erf) GELU or
ReLU. Norms act row-wise: LayerNorm ``γ ⊙ (z − μ)/√(σ² + ε) + β``, RMSNorm ``γ ⊙ z/√(mean z² + ε)``.

Weights are drawn on the CPU in float64 from an explicit ``torch.Generator`` and then moved, so a CPU and a
CUDA instance with the same seed are the same instance. TF32 is switched off whenever CUDA is used.
"""
from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as nnf
from torch import nn

from theory._domain import (
    require_int,
    require_nonnegative,
    require_positive,
    require_real,
)
from verify.engine.devices import resolve_device


class Placement(str, enum.Enum):
    POST = "post"
    PRE = "pre"
    PERI = "peri"
    NONE = "none"
    OUTNORM = "outnorm"
    DEEPNORM = "deepnorm"
    MIXLN = "mixln"
    LNS = "lns"


# The step rules a placement resolves to (Mix-LN is post or pre depending on the block, LNS is pre with a scaled
# norm output).
STEP_RULES = ("post", "pre", "peri", "none", "outnorm", "deepnorm", "lns")
NORM_KINDS = ("layer", "rms")
ACTIVATIONS = ("relu", "gelu")
SUBLAYER_KINDS = ("attn", "mlp")


def _choice(name: str, value, choices):
    if isinstance(value, enum.Enum):
        value = value.value
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def _positive(name: str, value) -> float:
    return float(require_positive(name, value))


def _nonnegative(name: str, value) -> float:
    return float(require_nonnegative(name, value))


@dataclasses.dataclass(frozen=True)
class StackConfig:
    """Everything that defines a stack of residual steps; one config feeds every placement.

    ``n_blocks`` blocks of ``sublayers`` (default attention then MLP) give ``n_steps = n_blocks·len(sublayers)``
    residual steps. ``dt`` is one Δt for every step or a sequence with one Δt_k per step.

    Initialisation: every weight matrix is N(0, σ²) with σ = ``weight_scale``/√fan_in, times ``qk_scale`` for
    W_Q, W_K (0 gives uniform attention) and ``out_scale`` for the residual-branch output maps W_O, W₂ (DeepNorm's β).
    Biases are N(0, ``bias_std``²) (0 by default, i.e. zero). Norm gains start at ``gamma``, norm biases at ``beta``.
    """

    d: int
    n_blocks: int = 1
    placement: str = "pre"
    n_heads: int = 1
    d_mlp: int | None = None
    sublayers: tuple[str, ...] = ("attn", "mlp")
    norm: str = "layer"
    eps: float = 1e-5
    eps_out: float | None = None
    gamma: float = 1.0
    beta: float = 0.0
    activation: str = "gelu"
    causal: bool = False
    dt: float | tuple[float, ...] = 1.0
    weight_scale: float = 1.0
    qk_scale: float = 1.0
    out_scale: float = 1.0
    bias: bool = True
    bias_std: float = 0.0
    final_norm: bool = False
    mixln_post_blocks: int | None = None
    deepnorm_alpha: float | None = None
    dtype: torch.dtype = torch.float64
    device: str = "cpu"

    def __post_init__(self):
        require_int("d", self.d, 2)
        require_int("n_blocks", self.n_blocks, 1)
        object.__setattr__(self, "placement", _choice("placement", self.placement, [p.value for p in Placement]))
        require_int("n_heads", self.n_heads, 1)
        if self.d % self.n_heads:
            raise ValueError(f"n_heads must divide d, got n_heads={self.n_heads}, d={self.d}")
        if self.d_mlp is not None:
            require_int("d_mlp", self.d_mlp, 1)
        if isinstance(self.sublayers, str) or not isinstance(self.sublayers, Sequence) or not self.sublayers:
            raise ValueError(f"sublayers must be a non-empty tuple of {SUBLAYER_KINDS}, got {self.sublayers!r}")
        object.__setattr__(self, "sublayers", tuple(_choice("sublayers", s, SUBLAYER_KINDS) for s in self.sublayers))
        _choice("norm", self.norm, NORM_KINDS)
        _nonnegative("eps", self.eps)
        if self.eps_out is not None:
            _nonnegative("eps_out", self.eps_out)
        require_real("gamma", self.gamma)
        require_real("beta", self.beta)
        _choice("activation", self.activation, ACTIVATIONS)
        if isinstance(self.dt, (int, float)) and not isinstance(self.dt, bool):
            _positive("dt", self.dt)
        else:
            dts = tuple(self.dt)
            if len(dts) != self.n_steps:
                raise ValueError(f"dt must have one entry per residual step ({self.n_steps}), got {len(dts)}")
            for k, v in enumerate(dts):
                _positive(f"dt[{k}]", v)
            object.__setattr__(self, "dt", tuple(float(v) for v in dts))
        _positive("weight_scale", self.weight_scale)
        _nonnegative("qk_scale", self.qk_scale)
        _nonnegative("out_scale", self.out_scale)
        _nonnegative("bias_std", self.bias_std)
        if self.mixln_post_blocks is not None:
            require_int("mixln_post_blocks", self.mixln_post_blocks, 0)
            if self.mixln_post_blocks > self.n_blocks:
                raise ValueError(f"mixln_post_blocks must be <= n_blocks={self.n_blocks}, got {self.mixln_post_blocks}")
        if self.deepnorm_alpha is not None:
            _positive("deepnorm_alpha", self.deepnorm_alpha)
        if self.dtype not in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype must be a floating torch dtype, got {self.dtype!r}")
        resolve_device(self.device)

    # ---- derived quantities -------------------------------------------------------------------------------
    @property
    def n_steps(self) -> int:
        return self.n_blocks * len(self.sublayers)

    @property
    def hidden(self) -> int:
        return 4 * self.d if self.d_mlp is None else self.d_mlp

    @property
    def head_dim(self) -> int:
        return self.d // self.n_heads

    @property
    def dts(self) -> tuple[float, ...]:
        if isinstance(self.dt, tuple):
            return self.dt
        return (float(self.dt),) * self.n_steps

    @property
    def eps_output(self) -> float:
        return self.eps if self.eps_out is None else self.eps_out

    @property
    def alpha(self) -> float:
        """DeepNorm's residual weight α (default (2L)^{1/4}, the encoder-only value of Wang et al. 2022)."""
        return (2 * self.n_blocks) ** 0.25 if self.deepnorm_alpha is None else self.deepnorm_alpha

    @property
    def post_blocks(self) -> int:
        """Mix-LN: how many leading blocks are post-LN (default ⌊L/4⌋, at least 1 when L >= 2)."""
        if self.mixln_post_blocks is not None:
            return self.mixln_post_blocks
        return max(1, self.n_blocks // 4) if self.n_blocks >= 2 else 0

    def step_kind(self, k: int) -> str:
        return self.sublayers[k % len(self.sublayers)]

    def step_block(self, k: int) -> int:
        """0-based block index of step k."""
        return k // len(self.sublayers)

    def step_rule(self, k: int) -> str:
        """The residual rule step k follows (one of STEP_RULES)."""
        p = self.placement
        if p == "mixln":
            return "post" if self.step_block(k) < self.post_blocks else "pre"
        return p

    def replace(self, **changes) -> "StackConfig":
        return dataclasses.replace(self, **changes)


# ---- helpers -------------------------------------------------------------------------------------------------
# Widths up to which attention concatenates W_Q, W_K, W_V for one matmul (one kernel instead of three where launches
# dominate); wider, the per-call copy of 3d² weights per instance costs more than it saves: measured in one process
# (1 thread, 64 instances, 16 tokens) the separate matmuls were 2.2× faster forward at d = 256, 1.3× at d = 64, and
# on par at d = 16.
FUSED_QKV_MAX_D = 32


def _bcast(p: torch.Tensor, x: torch.Tensor, tail: int) -> torch.Tensor:
    """View parameter ``p`` of shape (I, *t) with ``len(t) == tail`` so it broadcasts against x (I, *batch, ...)."""
    extra = x.dim() - 1 - tail
    return p.view(p.shape[0], *([1] * extra), *p.shape[1:])


def _bmat(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """View a batched matrix w (I, a, b) so that ``x @ w`` works for x of shape (I, *batch, n, a)."""
    extra = x.dim() - 3
    return w.view(w.shape[0], *([1] * extra), *w.shape[1:])


class BatchedNorm(nn.Module):
    """Row-wise LayerNorm or RMSNorm with per-instance gain γ (I, d) and (LayerNorm only) bias β (I, d)."""

    def __init__(self, n_instances: int, d: int, kind: str, eps: float, gamma: float, beta: float):
        super().__init__()
        self.kind = _choice("norm", kind, NORM_KINDS)
        self.eps = _nonnegative("eps", eps)
        self.gamma = nn.Parameter(torch.full((n_instances, d), float(gamma), dtype=torch.float64))
        if self.kind == "layer":
            self.beta = nn.Parameter(torch.full((n_instances, d), float(beta), dtype=torch.float64))
        else:
            self.register_parameter("beta", None)

    def normalized(self, z: torch.Tensor) -> torch.Tensor:
        """The gain-free part: (z − μ)/s for LayerNorm, z/r for RMSNorm (s² the biased variance).

        LayerNorm centres each row explicitly (z − fl(μ): one rounded shift per row, exact by Sterbenz where
        |μ| ≫ σ) and then runs torch's native layer_norm on the centred rows, whose mean is ~u·|μ|: the kernel
        re-centres, its variance is accurate and its output has no cancellation. torch's layer_norm on the raw
        rows loses digits on rows with a large mean and a small spread (the N1/N3 checks at input mean −5,
        scale 1e-3, ε = 0 exceeded their round-off tolerance by 2–5× with it). The mean is detached: LayerNorm is
        shift-invariant, so z ↦ LN(z − m) with m held fixed has the same derivatives of every order as LN, and
        the native fused backward (one kernel) replaces the two-pass form's autograd graph (measured 2–5× faster
        forward + backward at d = 16–64). The shift must be one number per row: ``torch.add(z, Σz, alpha=−1/d)``
        rounds it differently in vector and scalar lanes and failed N1's witness. RMSNorm has no cancellation
        and uses the native kernel directly."""
        if self.kind == "layer":
            c = z - z.detach().mean(dim=-1, keepdim=True)
            return nnf.layer_norm(c, (z.shape[-1],), eps=self.eps)
        return nnf.rms_norm(z, (z.shape[-1],), eps=self.eps)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # z: (I, *batch, n, d)
        gamma = _bcast(self.gamma, z, 1)
        if self.beta is None:
            return gamma * self.normalized(z)
        return torch.addcmul(_bcast(self.beta, z, 1), gamma, self.normalized(z))


class BatchedAttention(nn.Module):
    """Multi-head softmax attention, per instance: softmax(Q Kᵀ/√d_h) V W_O + b_O, Q = U W_Q (I, d, d) etc."""

    def __init__(self, n_instances: int, d: int, n_heads: int, causal: bool, bias: bool):
        super().__init__()
        self.d, self.n_heads, self.causal = d, n_heads, bool(causal)
        shape = (n_instances, d, d)
        self.W_q = nn.Parameter(torch.zeros(shape, dtype=torch.float64))
        self.W_k = nn.Parameter(torch.zeros(shape, dtype=torch.float64))
        self.W_v = nn.Parameter(torch.zeros(shape, dtype=torch.float64))
        self.W_o = nn.Parameter(torch.zeros(shape, dtype=torch.float64))
        if bias:
            self.b_o = nn.Parameter(torch.zeros((n_instances, d), dtype=torch.float64))
        else:
            self.register_parameter("b_o", None)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:  # (I, *b, n, d) -> (I, *b, H, n, d_h)
        *lead, n, d = t.shape
        return t.view(*lead, n, self.n_heads, d // self.n_heads).transpose(-2, -3)

    def _mask(self, n: int, device) -> torch.Tensor:
        return torch.ones(n, n, dtype=torch.bool, device=device).triu(1)

    def _mask_bias(self, n: int, dtype, device) -> torch.Tensor:
        """The causal mask as an additive (n, n) bias (0 on and below the diagonal, −inf above), cached."""
        key = (n, dtype, device)
        cached = getattr(self, "_mask_cache", None)
        if cached is None or cached[0] != key:
            bias = torch.zeros(n, n, dtype=dtype, device=device).masked_fill(self._mask(n, device), float("-inf"))
            self._mask_cache = cached = (key, bias)
        return cached[1]

    def probs(self, u: torch.Tensor) -> torch.Tensor:
        """Attention probabilities P, shape (I, *batch, H, n, n); rows sum to one."""
        q = self._heads(u @ _bmat(self.W_q, u))
        k = self._heads(u @ _bmat(self.W_k, u))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d // self.n_heads)  # (I, *b, H, n, n)
        if self.causal:
            scores = scores.masked_fill(self._mask(u.shape[-2], u.device), float("-inf"))
        return torch.softmax(scores, dim=-1)

    def _forward_broadcast(self, u: torch.Tensor) -> torch.Tensor:
        """The same map by broadcasting matmuls, for weights whose instance dimension broadcasts against u's
        leading one (e.g. a single trained instance applied to a batch laid out as instances)."""
        v = self._heads(u @ _bmat(self.W_v, u))  # (I, *b, H, n, d_h)
        h = (self.probs(u) @ v).transpose(-2, -3)  # (I, *b, n, H, d_h)
        out = h.reshape(*u.shape) @ _bmat(self.W_o, u)
        if self.b_o is not None:
            out = out + _bcast(self.b_o, u, 1)
        return out

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # u: (I, *batch, n, d)
        # Few, large kernels (the small-width regime is launch-bound): one batched matmul for Q, K, V (the three
        # maps side by side, (I, d, 3d)); heads and batch elements as one batch dimension of 3-D matmuls; the
        # scale 1/√d_h and the causal mask fused into the score matmul (baddbmm with an additive 0/−inf bias:
        # adding 0 is exact, so only the scale's rounding differs from dividing by √d_h, within one ulp).
        inst, n, d = u.shape[0], u.shape[-2], u.shape[-1]
        if self.W_q.shape[0] != inst:  # one instance's weights broadcast over a leading batch dimension
            return self._forward_broadcast(u)
        heads, dh = self.n_heads, d // self.n_heads
        u3 = u.reshape(inst, -1, d)
        batch = u3.shape[1] // n
        if d <= FUSED_QKV_MAX_D:  # launch-bound: one kernel; the copy of the weights is cheap
            qkv = torch.bmm(u3, torch.cat((self.W_q, self.W_k, self.W_v), dim=-1))  # (I, B·n, 3d)
            parts = qkv.split(d, dim=-1)
        else:  # wide: copying 3d² weights per instance every call would cost as much as the matmul itself
            parts = [torch.bmm(u3, w) for w in (self.W_q, self.W_k, self.W_v)]
        if heads == 1:
            q, k, v = (t.reshape(inst * batch, n, d) for t in parts)
        else:
            q, k, v = (t.reshape(inst, batch, n, heads, dh).transpose(2, 3).reshape(inst * batch * heads, n, dh)
                       for t in parts)  # (I·B·H, n, d_h)
        scale = 1.0 / math.sqrt(dh)
        if self.causal:
            scores = torch.baddbmm(self._mask_bias(n, u.dtype, u.device), q, k.transpose(-1, -2), alpha=scale)
        else:
            scores = torch.bmm(q, k.transpose(-1, -2)).mul_(scale)
        h = torch.bmm(torch.softmax(scores, dim=-1), v)  # (I·B·H, n, d_h)
        if heads == 1:
            h = h.view(inst, -1, d)
        else:
            h = h.view(inst, batch, heads, n, dh).transpose(2, 3).reshape(inst, -1, d)  # (I, B·n, d)
        if self.b_o is None:
            out = torch.bmm(h, self.W_o)
        else:
            out = torch.baddbmm(self.b_o.unsqueeze(1), h, self.W_o)
        return out.view(u.shape)


class BatchedMLP(nn.Module):
    """φ(U W₁ + b₁) W₂ + b₂ per instance, W₁ (I, d, m), W₂ (I, m, d); φ = ReLU or exact GELU."""

    def __init__(self, n_instances: int, d: int, hidden: int, activation: str, bias: bool):
        super().__init__()
        self.activation = _choice("activation", activation, ACTIVATIONS)
        self.W1 = nn.Parameter(torch.zeros((n_instances, d, hidden), dtype=torch.float64))
        self.W2 = nn.Parameter(torch.zeros((n_instances, hidden, d), dtype=torch.float64))
        if bias:
            self.b1 = nn.Parameter(torch.zeros((n_instances, hidden), dtype=torch.float64))
            self.b2 = nn.Parameter(torch.zeros((n_instances, d), dtype=torch.float64))
        else:
            self.register_parameter("b1", None)
            self.register_parameter("b2", None)

    def phi(self, z: torch.Tensor) -> torch.Tensor:
        return torch.relu(z) if self.activation == "relu" else nnf.gelu(z, approximate="none")

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # u: (I, *batch, n, d)
        inst, d = u.shape[0], u.shape[-1]
        if self.W1.shape[0] != inst:  # one instance's weights broadcast over a leading batch dimension
            z = u @ _bmat(self.W1, u)
            if self.b1 is not None:
                z = z + _bcast(self.b1, u, 1)
            out = self.phi(z) @ _bmat(self.W2, u)
            return out if self.b2 is None else out + _bcast(self.b2, u, 1)
        u3 = u.reshape(inst, -1, d)  # (I, B·n, d): the batch dims folded into rows, one bmm per map
        z = torch.bmm(u3, self.W1) if self.b1 is None else torch.baddbmm(self.b1.unsqueeze(1), u3, self.W1)
        h = self.phi(z)
        out = torch.bmm(h, self.W2) if self.b2 is None else torch.baddbmm(self.b2.unsqueeze(1), h, self.W2)
        return out.view(u.shape)


class ResidualAdd(nn.Module):
    """Parameter-free ``x + update`` so forward hooks can read each residual step's two summands."""

    def forward(self, x: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
        return x + update


class ResidualStep(nn.Module):
    """One residual step k: its sublayer, the norms its rule needs, and its Δt_k.

    ``norm_in`` normalises the sublayer input (pre, peri, lns), ``norm_out`` the sublayer output (peri,
    outnorm), ``norm_res`` the residual sum (post, deepnorm). Absent norms are ``None``.
    """

    def __init__(self, cfg: StackConfig, k: int, n_instances: int):
        super().__init__()
        self.k = k
        self.kind = cfg.step_kind(k)
        self.block = cfg.step_block(k)
        self.rule = cfg.step_rule(k)
        self.dt = cfg.dts[k]
        self.alpha = cfg.alpha if self.rule == "deepnorm" else 1.0
        self.in_scale = 1.0 / math.sqrt(self.block + 1) if self.rule == "lns" else 1.0
        if self.kind == "attn":
            self.sublayer = BatchedAttention(n_instances, cfg.d, cfg.n_heads, cfg.causal, cfg.bias)
        else:
            self.sublayer = BatchedMLP(n_instances, cfg.d, cfg.hidden, cfg.activation, cfg.bias)

        def norm(eps):
            return BatchedNorm(n_instances, cfg.d, cfg.norm, eps, cfg.gamma, cfg.beta)

        self.norm_in = norm(cfg.eps) if self.rule in ("pre", "peri", "lns") else None
        self.norm_out = norm(cfg.eps_output) if self.rule in ("peri", "outnorm") else None
        self.norm_res = norm(cfg.eps) if self.rule in ("post", "deepnorm") else None
        self.residual = ResidualAdd()

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch without Δt: F(x), F(N(x)), N_out(F(N_in(x))), F(N(x)/√ℓ), … by rule."""
        u = x if self.norm_in is None else self.norm_in(x)
        if self.in_scale != 1.0:
            u = u * self.in_scale
        f = self.sublayer(u)
        return f if self.norm_out is None else self.norm_out(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ``self.dt`` is a float, or a tensor broadcasting against (I, *batch, n, d) for a per-instance Δt
        # (the S1 checks run each instance at its own admissible step this way).
        update = self.branch(x)
        if not (isinstance(self.dt, float) and self.dt == 1.0):  # 1·F is F bit for bit: skip the kernel
            update = self.dt * update
        if self.norm_res is not None:
            return self.norm_res(self.residual(self.alpha * x if self.alpha != 1.0 else x, update))
        return self.residual(x, update)


class Stack(nn.Module):
    """``n_instances`` independent stacks of ``cfg.n_steps`` residual steps (plus an optional final norm).

    ``Stack(cfg, n_instances, seed)`` draws every weight from ``torch.Generator().manual_seed(seed)`` on the CPU
    in float64 (in ``named_parameters`` order) and then moves the module to ``cfg.device``/``cfg.dtype``.
    """

    def __init__(self, cfg: StackConfig, n_instances: int = 1, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        self.n_instances = require_int("n_instances", n_instances, 1)
        self.steps = nn.ModuleList(ResidualStep(cfg, k, n_instances) for k in range(cfg.n_steps))
        if cfg.final_norm:
            self.final = BatchedNorm(n_instances, cfg.d, cfg.norm, cfg.eps, cfg.gamma, cfg.beta)
        else:
            self.final = None
        self.reset_parameters(seed)

    @property
    def device(self) -> torch.device:
        return resolve_device(self.cfg.device)

    @torch.no_grad()
    def reset_parameters(self, seed: int) -> "Stack":
        cfg = self.cfg
        gen = torch.Generator().manual_seed(int(seed))
        for name, p in self.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            shape, cpu = p.shape, torch.float64
            if leaf in ("gamma",):
                value = torch.full(shape, cfg.gamma, dtype=cpu)
            elif leaf == "beta":
                value = torch.full(shape, cfg.beta, dtype=cpu)
            elif leaf.startswith("b"):
                value = cfg.bias_std * torch.randn(shape, generator=gen, dtype=cpu)
            else:  # weight matrix (I, fan_in, fan_out)
                std = cfg.weight_scale / math.sqrt(shape[1])
                if leaf in ("W_q", "W_k"):
                    std *= cfg.qk_scale
                elif leaf in ("W_o", "W2"):
                    std *= cfg.out_scale
                value = std * torch.randn(shape, generator=gen, dtype=cpu)
            p.data = value
        self.to(device=self.device, dtype=cfg.dtype)
        self._validated_weights = None  # new storage may reuse a freed address: validate afresh
        return self

    def checkrequire_real(self) -> None:
        """Raise ValueError naming the first parameter that holds NaN or inf (always reads every parameter)."""
        for name, p in self.named_parameters():
            if not bool(torch.isfinite(p).all()):
                raise ValueError(f"parameter {name} contains NaN or inf")

    def _weights_key(self) -> tuple:
        """Identifies the current parameter values without reading them: storage, autograd version counter,
        shape, dtype and device of every parameter. In-place updates (optimizer steps, ``copy_``,
        ``load_state_dict``, writes under ``no_grad``) bump the version; ``.to``, ``reset_parameters`` and
        assignments to ``p.data`` change the storage. Writes *through* ``p.data[...]`` bypass the version
        counter, so after those call :meth:`checkrequire_real` yourself."""
        return tuple((p.data_ptr(), p._version, p.shape, p.dtype, p.device) for p in self.parameters())

    def check_weights(self) -> None:
        """:meth:`checkrequire_real`, skipped when no parameter changed since the last call that passed: the
        finiteness of the weights is checked once per weight change at the forward boundary, not per call
        (reading every parameter cost 1.3–5× a whole forward pass at small widths)."""
        key = self._weights_key()
        if key != getattr(self, "_validated_weights", None):
            self.checkrequire_real()
            self._validated_weights = key

    def check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 3 or x.shape[0] != self.n_instances or x.shape[-1] != self.cfg.d:
            raise ValueError(
                f"x must have shape (n_instances={self.n_instances}, *batch, n, d={self.cfg.d}), got {tuple(x.shape)}"
            )
        if x.dtype != self.cfg.dtype or x.device.type != self.device.type:
            raise ValueError(f"x must be {self.cfg.dtype} on {self.device}, got {x.dtype} on {x.device}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("x contains NaN or inf")

    def forward(self, x: torch.Tensor, trajectory: bool = False, validate: bool = True):
        """Run every step. Returns the output, or ``(output, [X_0, …, X_K])`` with ``trajectory=True``.

        The trajectory holds the hidden states between residual steps (before the optional final norm); the
        tensors are the ones the forward pass computes, nothing is copied.
        """
        if validate:
            self.check_input(x)
            self.check_weights()
        states = [x]
        for step in self.steps:
            x = step(x)
            states.append(x)
        out = x if self.final is None else self.final(x)
        return (out, states) if trajectory else out

    def instance_state(self, i: int) -> dict[str, torch.Tensor]:
        """Instance i's parameters (leading dimension removed), detached, float64 on the CPU."""
        return {name: p.detach()[i].to("cpu", torch.float64) for name, p in self.named_parameters()}


def sample_inputs(cfg: StackConfig, n_instances: int, n_tokens: int, seed: int, batch: Sequence[int] = (),
                  scale: float = 1.0, mean: float = 0.0) -> torch.Tensor:
    """Gaussian hidden states X_0 of shape (I, *batch, n, d), entries N(mean, scale²), drawn on the CPU."""
    require_int("n_tokens", n_tokens, 1)
    _positive("scale", scale)
    require_real("mean", mean)
    gen = torch.Generator().manual_seed(int(seed))
    x = mean + scale * torch.randn((n_instances, *batch, n_tokens, cfg.d), generator=gen, dtype=torch.float64)
    return x.to(device=resolve_device(cfg.device), dtype=cfg.dtype)


class CompiledStack:
    """Optional ``torch.compile`` of a :class:`Stack`'s forward pass (off by default; nothing in the suite uses it).

    ``CompiledStack(stack)(x)`` equals ``stack(x)`` up to round-off: inductor fuses the elementwise work (norms,
    GELU, softmax, residual adds) into generated C++ loops and keeps the batched matmuls in the BLAS library, so
    the float64 arithmetic is the same operations in a possibly different order (measured: ≤ 6.4e-15 from eager
    at d = 16 and 64; ``tests/test_zoo_fast.py`` holds it to the E1 round-off bound). Compiling needs a C++
    toolchain and takes minutes per shape (≈ 2 min forward + 1.5 min backward on the shared 2-core machine) —
    it pays only for long runs of one shape. If compilation fails (no compiler, an unsupported op) the call
    falls back to the eager stack with a warning and stays eager; ``fallback_reason`` says why.
    Input validation stays in eager code (``stack.check_input``/``check_weights`` before the compiled call)."""

    def __init__(self, stack: Stack, **compile_kwargs):
        if not isinstance(stack, Stack):
            raise ValueError(f"stack must be a verify.engine.zoo.Stack, got {type(stack).__name__}")
        self.stack = stack
        self.fallback_reason: str | None = None
        kwargs = dict(dynamic=False)
        kwargs.update(compile_kwargs)
        try:
            self._compiled = torch.compile(self._run, **kwargs)
        except Exception as exc:  # torch.compile itself may refuse (e.g. an unsupported Python)
            self._fall_back(exc)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        return self.stack(x, validate=False)

    def _fall_back(self, exc: BaseException) -> None:
        import warnings

        self.fallback_reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        self._compiled = None
        warnings.warn(f"torch.compile of the zoo Stack failed, running eager: {self.fallback_reason}",
                      RuntimeWarning, stacklevel=3)

    @property
    def is_compiled(self) -> bool:
        return self._compiled is not None

    def __call__(self, x: torch.Tensor, validate: bool = True) -> torch.Tensor:
        if validate:
            self.stack.check_input(x)
            self.stack.check_weights()
        if self._compiled is not None:
            try:
                return self._compiled(x)
            except Exception as exc:  # compilation happens on the first call of each shape
                self._fall_back(exc)
        return self._run(x)
