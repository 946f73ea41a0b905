"""Exact step Jacobians of the block zoo, batched over instances, and the oracles they are checked against (B1).

What it is for: A_k = ∂X_{k+1}/∂X_k (X vectorised row by row to R^{nd}) for every residual step rule of
``verify.engine.zoo``, for all I independent instances at once, plus the pieces the B2 bounds are made of: the
sublayer Jacobian J_F and its spectral norm, and the norm layer's Jacobian in closed form (N2).

How: instances are independent, so a vector-Jacobian product with the SAME one-hot cotangent e_o in every
instance returns row o of every instance's Jacobian; running the P = nd copies as an extra batch axis (the
zoo accepts (I, *batch, n, d)) gives all rows of all instances in one backward pass (:func:`batched_jacobian`;
a ``torch.vmap``-over-cotangents variant gives the same matrix). Independent references:

- :func:`composed_step_jacobian` — the chain rule written out per rule with the closed-form norm Jacobian
  (:func:`closed_form_norm_jacobian`, N2) and the sublayer's own Jacobian;
- :func:`mp_step_jacobian` — a pure-mpmath re-implementation of one step for one instance, differentiated by
  central differences at 50 digits (h = 1e-20: truncation ~h² ≈ 1e-40, cancellation ~1e-50/h = 1e-30).

What it is not: a general autodiff utility. Sizes are small (nd ≲ 100) because every Jacobian is dense.
"""
from __future__ import annotations

import mpmath
import torch

from verify.engine.zoo import BatchedAttention, BatchedMLP, BatchedNorm, ResidualStep


# ---- the engine: batched exact Jacobians -----------------------------------------------------------------------
def batched_jacobian(fn, x: torch.Tensor, method: str = "replicate", n_out: int | None = None) -> torch.Tensor:
    """J[i] = ∂ vec(fn(x)[i]) / ∂ vec(x[i]) for every instance i, shape (I, P, nd) with P = output size.

    ``fn`` maps (I, *s) → (I, *t) with instance i's output depending on instance i's input only (true for
    every zoo module). All rows come from vector-Jacobian products whose cotangent is the SAME one-hot e_o in
    every instance:

    - ``"replicate"`` (default; needs an ``fn`` that accepts an extra batch dimension, as every zoo module
      does): x is repeated along a new batch axis of length P = nd, copy o gets cotangent e_o, and ONE
      backward pass of the batched forward returns all P rows for all I instances (P = ``n_out``, by
      default the input size: every zoo map is square);
    - ``"vmap"``: one vjp, ``torch.vmap``-ed over the P one-hot cotangents (works for any fn, slower here).
    """
    x = x.detach()
    n_inst, tail = x.shape[0], x.shape[1:]
    p_in = x[0].numel()
    if method == "vmap":
        out, vjp_fn = torch.func.vjp(fn, x)
        otail = out.shape[1:]
        p = out[0].numel()
        eye = torch.eye(p, dtype=out.dtype, device=out.device).view(p, 1, *otail).expand(p, n_inst, *otail)
        (rows,) = torch.vmap(vjp_fn)(eye)  # (P, I, *s)
        return rows.reshape(p, n_inst, p_in).transpose(0, 1)
    if method != "replicate":
        raise ValueError(f"method must be 'replicate' or 'vmap', got {method!r}")
    with torch.enable_grad():
        p = p_in if n_out is None else n_out  # one copy per output coordinate
        xr = x.unsqueeze(1).expand(n_inst, p, *tail).clone().requires_grad_(True)
        out = fn(xr)  # (I, P, *t)
        otail = out.shape[2:]
        cot = torch.eye(p, dtype=out.dtype, device=out.device).view(1, p, *otail).expand(n_inst, p, *otail)
        (rows,) = torch.autograd.grad(out, xr, cot)
    return rows.reshape(n_inst, p, p_in)


def step_jacobian(step: ResidualStep, x: torch.Tensor) -> torch.Tensor:
    """A = ∂X⁺/∂X of one residual step at X = x (I, n, d): shape (I, nd, nd)."""
    return batched_jacobian(step, x)


def sublayer_input(step: ResidualStep, x: torch.Tensor) -> torch.Tensor:
    """The sublayer's input U at step input x: N_in(x)·(1/√ℓ for lns) or x itself."""
    u = x if step.norm_in is None else step.norm_in(x)
    return u * step.in_scale if step.in_scale != 1.0 else u


def sublayer_jacobian(step: ResidualStep, u: torch.Tensor) -> torch.Tensor:
    """J_F = ∂F(U)/∂U at the sublayer input u (I, n, d): shape (I, nd, nd) (attention mixes tokens)."""
    return batched_jacobian(step.sublayer, u)


def spectral_norm(mats: torch.Tensor) -> torch.Tensor:
    """‖M‖₂ of each matrix in a batch (..., p, q) — the largest singular value (LAPACK SVD, exact to ~u‖M‖)."""
    return torch.linalg.matrix_norm(mats, ord=2)


def identity_like(mats: torch.Tensor) -> torch.Tensor:
    return torch.eye(mats.shape[-1], dtype=mats.dtype, device=mats.device).expand_as(mats)


# ---- N2 in closed form -----------------------------------------------------------------------------------------
def _block_diag_rows(blocks: torch.Tensor) -> torch.Tensor:
    """(I, n, d, d) row blocks → the (I, nd, nd) block-diagonal matrix of the row-wise map."""
    n_inst, n, d, _ = blocks.shape
    eye_n = torch.eye(n, dtype=blocks.dtype, device=blocks.device)
    return torch.einsum("ab,iajk->iajbk", eye_n, blocks).reshape(n_inst, n * d, n * d)


def closed_form_norm_jacobian(norm: BatchedNorm, z: torch.Tensor) -> torch.Tensor:
    """N2: the norm layer's Jacobian at z (I, n, d), block-diagonal over rows, shape (I, nd, nd).

    LayerNorm row: diag(γ)·(1/s)·(I − 11ᵀ/d − c cᵀ/(d s²)), c = z − μ1, s² = mean(c²) + ε (CENTRED).
    RMSNorm row:   diag(γ)·(1/r)·(I − z zᵀ/(d r²)),           r² = mean(z²) + ε.
    """
    d = z.shape[-1]
    gamma = norm.gamma.view(norm.gamma.shape[0], 1, d, 1)  # scales the output coordinate (row of J)
    eye = torch.eye(d, dtype=z.dtype, device=z.device)
    if norm.kind == "layer":
        c = z - z.mean(dim=-1, keepdim=True)
        s2 = (c * c).mean(dim=-1, keepdim=True) + norm.eps  # (I, n, 1)
        proj = eye - 1.0 / d - c.unsqueeze(-1) * c.unsqueeze(-2) / (d * s2.unsqueeze(-1))
    else:
        s2 = (z * z).mean(dim=-1, keepdim=True) + norm.eps
        proj = eye - z.unsqueeze(-1) * z.unsqueeze(-2) / (d * s2.unsqueeze(-1))
    blocks = gamma * proj / torch.sqrt(s2).unsqueeze(-1)
    return _block_diag_rows(blocks)


def composed_step_jacobian(step: ResidualStep, x: torch.Tensor, norm_jacobian=closed_form_norm_jacobian,
                           dt: float | None = None) -> torch.Tensor:
    """B1: A written as the chain rule of N2 (``norm_jacobian``) and the sublayer Jacobian J_F, per rule:

        pre / lns  A = I + Δt·J_F(U)·(1/√ℓ)·J_Nin(X),       U = N_in(X)/√ℓ
        peri       A = I + Δt·J_Nout(F)·J_F(U)·J_Nin(X),    U = N_in(X), F = F(U)
        outnorm    A = I + Δt·J_Nout(F)·J_F(X)
        none       A = I + Δt·J_F(X)
        post       A = J_N(Y)·(I + Δt·J_F(X)),              Y = X + Δt F(X)
        deepnorm   A = J_N(Y)·(αI + Δt·J_F(X)),             Y = αX + Δt F(X)

    ``dt`` overrides the step's Δt (meta-tests drop it); ``norm_jacobian`` is injectable likewise.
    """
    with torch.no_grad():
        return _composed(step, x.detach(), norm_jacobian, step.dt if dt is None else dt)


def _composed(step: ResidualStep, x: torch.Tensor, norm_jacobian, dt: float) -> torch.Tensor:
    u = sublayer_input(step, x)
    jf = sublayer_jacobian(step, u)
    eye = identity_like(jf)
    rule = step.rule
    if rule in ("pre", "lns"):
        return eye + dt * step.in_scale * jf @ norm_jacobian(step.norm_in, x)
    if rule == "peri":
        f = step.sublayer(u)
        return eye + dt * norm_jacobian(step.norm_out, f) @ jf @ norm_jacobian(step.norm_in, x)
    if rule == "outnorm":
        return eye + dt * norm_jacobian(step.norm_out, step.sublayer(x)) @ jf
    if rule == "none":
        return eye + dt * jf
    if rule in ("post", "deepnorm"):
        y = step.alpha * x + dt * step.sublayer(x)
        return norm_jacobian(step.norm_res, y) @ (step.alpha * eye + dt * jf)
    raise ValueError(f"rule must be a zoo step rule, got {rule!r}")


# ---- the mpmath oracle: one step of one instance, differentiated at 50 digits -----------------------------------
def _mp(t: torch.Tensor):
    """A float64 tensor (1-D or 2-D) as nested lists of exact mpf values."""
    vals = t.detach().to("cpu", torch.float64).tolist()
    if isinstance(vals[0], list):
        return [[mpmath.mpf(v) for v in row] for row in vals]
    return [mpmath.mpf(v) for v in vals]


def _matmul(a, b):
    cols = list(zip(*b))
    return [[mpmath.fsum(x * y for x, y in zip(row, col)) for col in cols] for row in a]


def _mp_norm(norm: BatchedNorm, i: int, rows):
    gamma = _mp(norm.gamma[i])
    beta = _mp(norm.beta[i]) if norm.beta is not None else [mpmath.mpf(0)] * len(gamma)
    eps = mpmath.mpf(norm.eps)
    out = []
    for z in rows:
        d = len(z)
        if norm.kind == "layer":
            mu = mpmath.fsum(z) / d
            c = [v - mu for v in z]
            s = mpmath.sqrt(mpmath.fsum(v * v for v in c) / d + eps)
        else:
            c = z
            s = mpmath.sqrt(mpmath.fsum(v * v for v in z) / d + eps)
        out.append([g * v / s + b for g, v, b in zip(gamma, c, beta)])
    return out


def _mp_attention(mod: BatchedAttention, i: int, u):
    n, d, heads = len(u), len(u[0]), mod.n_heads
    dh = d // heads
    q, k, v = (_matmul(u, _mp(w[i])) for w in (mod.W_q, mod.W_k, mod.W_v))
    concat = [[None] * d for _ in range(n)]
    scale = mpmath.sqrt(dh)
    for h in range(heads):
        cols = range(h * dh, (h + 1) * dh)
        for a in range(n):
            allowed = range(a + 1) if mod.causal else range(n)
            scores = [mpmath.fsum(q[a][c] * k[b][c] for c in cols) / scale for b in allowed]
            top = max(scores)
            w = [mpmath.exp(sc - top) for sc in scores]
            tot = mpmath.fsum(w)
            for c in cols:
                concat[a][c] = mpmath.fsum(wb / tot * v[b][c] for wb, b in zip(w, allowed))
    out = _matmul(concat, _mp(mod.W_o[i]))
    if mod.b_o is not None:
        bo = _mp(mod.b_o[i])
        out = [[x + b for x, b in zip(row, bo)] for row in out]
    return out


def _mp_mlp(mod: BatchedMLP, i: int, u):
    z = _matmul(u, _mp(mod.W1[i]))
    if mod.b1 is not None:
        b1 = _mp(mod.b1[i])
        z = [[x + b for x, b in zip(row, b1)] for row in z]
    if mod.activation == "relu":
        a = [[x if x > 0 else mpmath.mpf(0) for x in row] for row in z]
    else:
        a = [[x * (1 + mpmath.erf(x / mpmath.sqrt(2))) / 2 for x in row] for row in z]
    out = _matmul(a, _mp(mod.W2[i]))
    if mod.b2 is not None:
        b2 = _mp(mod.b2[i])
        out = [[x + b for x, b in zip(row, b2)] for row in out]
    return out


def mp_step(step: ResidualStep, i: int, x):
    """One residual step of instance i in mpmath; ``x`` is an n×d nested list of mpf. Same rules as the zoo."""
    def sub(u):
        return _mp_attention(step.sublayer, i, u) if step.kind == "attn" else _mp_mlp(step.sublayer, i, u)

    dt = mpmath.mpf(step.dt)
    u = x if step.norm_in is None else _mp_norm(step.norm_in, i, x)
    if step.in_scale != 1.0:
        scale = 1 / mpmath.sqrt(step.block + 1)  # exact 1/√ℓ, not the float64 constant
        u = [[v * scale for v in row] for row in u]
    f = sub(u)
    if step.norm_out is not None:
        f = _mp_norm(step.norm_out, i, f)
    if step.norm_res is not None:
        alpha = mpmath.mpf(step.alpha)
        y = [[alpha * a + dt * b for a, b in zip(r1, r2)] for r1, r2 in zip(x, f)]
        return _mp_norm(step.norm_res, i, y)
    return [[a + dt * b for a, b in zip(r1, r2)] for r1, r2 in zip(x, f)]


def mp_step_jacobian(step: ResidualStep, i: int, x_i: torch.Tensor, dps: int = 50):
    """A for instance i at x_i (n, d) by central differences of :func:`mp_step` at ``dps`` digits.

    Step h = 10^{-(2·dps/5)}: truncation error ~h² and cancellation ~10^{-dps}/h are both ≤ 10^{-3dps/5}
    relative (1e-30 at 50 digits). Returns an (nd, nd) mpmath matrix, rows = outputs.
    """
    with mpmath.workdps(dps):
        x = _mp(x_i)
        n, d = len(x), len(x[0])
        h = mpmath.mpf(10) ** (-(2 * dps) // 5)
        jac = mpmath.matrix(n * d, n * d)
        for a in range(n):
            for j in range(d):
                xp = [row[:] for row in x]
                xm = [row[:] for row in x]
                xp[a][j] += h
                xm[a][j] -= h
                fp, fm = mp_step(step, i, xp), mp_step(step, i, xm)
                for b in range(n):
                    for k in range(d):
                        jac[b * d + k, a * d + j] = (fp[b][k] - fm[b][k]) / (2 * h)
        return jac


def mp_matrix_to_tensor(m) -> torch.Tensor:
    return torch.tensor([[float(m[r, c]) for c in range(m.cols)] for r in range(m.rows)], dtype=torch.float64)
