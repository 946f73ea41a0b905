"""The oracle's recursion on python-flint's arb matrices: the same 50-digit forward pass, several times faster.

What it is for: the backend ``oracle_forward(..., backend="flint")`` of :mod:`verify.engine.oracle` (chosen by
``backend="auto"`` whenever python-flint is importable). It evaluates exactly the step rules of that module's
docstring, reads the same ``Stack.instance_state`` names, and returns the same :class:`OracleResult` (rows of
``mpf``), so the comparisons (``row_errors``, ``compare_ladder``) and the precision ladder are unchanged.

How it differs from the mpmath backend: matrix products are arb_mat products (C loops instead of one Python
``mpf`` per multiply-add), every weight is converted once per pass (per head for attention: W_Q, W_K, W_V split by
columns, W_O by rows, so no slicing is needed), and the working precision is the same number of bits mpmath uses
for ``dps`` digits (``mpmath.libmp.dps_to_prec``).

Arithmetic model: every intermediate is **re-centred** — replaced by its ball's midpoint (radius 0) — after each
operation, so the computation is round-to-nearest floating point at that precision, like mpmath's (without it
the balls of a depth-64 pass grow by ~16 blocks' worth of error amplification and the midpoints lose digits to
the radius bookkeeping). The balls are therefore *not* used as rigorous enclosures; the oracle certifies itself
as before, with the precision ladder (50 vs 70 digits) and the cross-backend agreement test.

Every float64 input converts to an arb exactly (radius 0); the final midpoints convert to ``mpf`` exactly.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import flint
import mpmath
from flint import arb, arb_mat
from mpmath import mpf

from verify.engine.oracle import (
    OracleConfig,
    OracleResult,
    UndefinedNormError,
    gelu_erf,
    gelu_tanh,
    relu,
    step_rule,
)


# ---- exact conversion in and out -------------------------------------------------------------------------------
def _to_list(value):
    return value.tolist() if hasattr(value, "tolist") else value


def _arb_entry(name: str, a) -> arb:
    if isinstance(a, bool) or not isinstance(a, (int, float, mpf)):
        raise ValueError(f"{name} holds a non-numeric entry {a!r}")
    if isinstance(a, mpf):
        if not mpmath.isfinite(a):
            raise ValueError(f"{name} contains NaN or inf")
        man, exp = a.man_exp
        return arb(man) * arb(2) ** exp  # exact: a power of two times an integer
    if not math.isfinite(a):
        raise ValueError(f"{name} contains NaN or inf")
    return arb(a)  # exact for a float64 (arb_set_d)


def _validated(name: str, value, rows: int | None, cols: int) -> list[list]:
    """The rows of a rows×cols matrix (tensor, array or nested lists) as Python lists, shape-checked."""
    v = _to_list(value)
    if not isinstance(v, Sequence) or (rows is not None and len(v) != rows):
        raise ValueError(f"{name} must be a {rows}×{cols} matrix")
    v = [_to_list(r) for r in v]
    if not all(isinstance(r, Sequence) and len(r) == cols for r in v):
        raise ValueError(f"{name} must be a vector of length {cols}" if rows == 1
                         else f"{name} must be a {rows}×{cols} matrix")
    return v


def _arb_mat(name: str, v: list[list]) -> arb_mat:
    """Exact conversion of validated rows to an arb_mat; entries must be finite numbers."""
    cols = len(v[0]) if v else 0
    flat = [a for r in v for a in r]
    if set(map(type, flat)) <= {float, int} and all(map(math.isfinite, flat)):  # the usual case, checked in bulk
        return arb_mat(len(v), cols, flat)  # exact (arb_set_d / arb_set_si)
    return arb_mat([[_arb_entry(name, a) for a in r] for r in v])


def _rows(name: str, value, rows: int | None, cols: int) -> list[list[arb]]:
    m = _arb_mat(name, _validated(name, value, rows, cols))
    return [[m[i, j] for j in range(m.ncols())] for i in range(m.nrows())]


def _to_mpf(a: arb) -> mpf:
    man, exp = a.mid().man_exp()
    return mpf((int(man), int(exp)))


def _mid(m: arb_mat) -> arb_mat:
    return m.mid()


# ---- parameters ------------------------------------------------------------------------------------------------
class _Params:
    """Parameter lookup by ``named_parameters`` name, converted exactly once, with errors naming what is missing."""

    def __init__(self, state: Mapping, cfg: OracleConfig, n: int):
        if not isinstance(state, Mapping):
            raise ValueError(f"state must be a mapping name -> array (Stack.instance_state(i)), got {type(state)}")
        self.state, self.cfg, self.n = state, cfg, n

    def _get(self, name: str):
        if name not in self.state:
            raise ValueError(f"state is missing parameter {name!r}")
        return self.state[name]

    def vector(self, name: str, length: int) -> list[arb]:
        v = _to_list(self._get(name))
        if not isinstance(v, Sequence) or len(v) != length:
            raise ValueError(f"{name} must be a vector of length {length}")
        return _rows(name, [v], 1, length)[0]

    def rows(self, name: str, rows: int, cols: int) -> list[list]:
        """The matrix as validated Python rows (not yet converted: slice first, then :func:`_arb_mat`)."""
        return _validated(name, self._get(name), rows, cols)

    def matrix(self, name: str, rows: int, cols: int) -> arb_mat:
        return _arb_mat(name, self.rows(name, rows, cols))

    def bias(self, name: str, length: int) -> arb_mat | None:
        """The bias as an n×length matrix (the row repeated), or None without biases."""
        if not self.cfg.bias:
            return None
        b = self.vector(name, length)
        return arb_mat([b] * self.n)

    def hidden(self, name: str) -> int:
        w = _to_list(self._get(name))
        if not isinstance(w, Sequence) or not w or not isinstance(_to_list(w[0]), Sequence):
            raise ValueError(f"{name} must be a matrix")
        return len(_to_list(w[0]))


class _Norm:
    def __init__(self, kind: str, eps: float, gamma: list[arb], beta: list[arb] | None):
        self.kind, self.eps, self.gamma, self.beta = kind, arb(eps), gamma, beta

    def __call__(self, x: arb_mat) -> arb_mat:
        n, d = x.nrows(), x.ncols()
        inv_d = arb(1) / d
        out = []
        for i in range(n):
            z = [x[i, j] for j in range(d)]
            if self.kind == "layer":
                mu = (sum(z, arb(0)) * inv_d).mid()
                c = [(a - mu).mid() for a in z]
                s = (sum((a * a).mid() for a in c) * inv_d + self.eps).mid().sqrt().mid()
                if s.is_zero():
                    raise UndefinedNormError("x: a LayerNorm with eps = 0 received a constant row (0/0)")
                out.append([(g * (a / s).mid()).mid() + b for g, a, b in zip(self.gamma, c, self.beta)])
            else:
                r = (sum((a * a).mid() for a in z) * inv_d + self.eps).mid().sqrt().mid()
                if r.is_zero():
                    raise UndefinedNormError("x: an RMSNorm with eps = 0 received a zero row (0/0)")
                out.append([g * (a / r).mid() for g, a in zip(self.gamma, z)])
        return _mid(arb_mat(out))


def _norm(p: _Params, prefix: str, eps: float) -> _Norm:
    d, kind = p.cfg.d, p.cfg.norm
    beta = p.vector(f"{prefix}.beta", d) if kind == "layer" else None
    return _Norm(kind, eps, p.vector(f"{prefix}.gamma", d), beta)


class _Attention:
    def __init__(self, p: _Params, k: int):
        d, heads = p.cfg.d, p.cfg.n_heads
        pre = f"steps.{k}.sublayer."
        dh = d // heads
        names = [pre + w for w in ("W_q", "W_k", "W_v", "W_o")]
        wq, wk, wv, wo = (p.rows(w, d, d) for w in names)
        sls = [slice(h * dh, (h + 1) * dh) for h in range(heads)]
        self.q = [_arb_mat(names[0], [r[s] for r in wq]) for s in sls]  # W_Q's columns of head h
        self.k = [_arb_mat(names[1], [r[s] for r in wk]) for s in sls]
        self.v = [_arb_mat(names[2], [r[s] for r in wv]) for s in sls]
        self.o = [_arb_mat(names[3], wo[s]) for s in sls]  # W_O's rows of head h
        self.b = p.bias(pre + "b_o", d)
        self.scale = (arb(1) / arb(dh).sqrt()).mid()
        self.causal = p.cfg.causal

    def __call__(self, u: arb_mat) -> arb_mat:
        n = u.nrows()
        out = None
        for wq, wk, wv, wo in zip(self.q, self.k, self.v, self.o):
            q, kk, v = _mid(u * wq), _mid(u * wk), _mid(u * wv)
            scores = _mid(q * kk.transpose())
            probs = []
            for i in range(n):
                keys = range(i + 1) if self.causal else range(n)
                row = [(scores[i, j] * self.scale).mid() for j in keys]
                top = max(row, key=float)  # the max is subtracted for the same roundings as mpmath's path
                w = [(a - top).mid().exp().mid() for a in row]
                total = sum(w, arb(0)).mid()
                probs.append([(a / total).mid() for a in w] + [arb(0)] * (n - len(w)))
            head = _mid(arb_mat(probs) * v)
            term = _mid(head * wo)
            out = term if out is None else _mid(out + term)
        return out if self.b is None else _mid(out + self.b)


def _gelu_erf(x: arb) -> arb:
    return (x * (1 + (x * _INV_SQRT2[0]).mid().erf().mid()) / 2).mid()


def _gelu_tanh(x: arb) -> arb:
    c = (arb(2) / arb.pi()).sqrt().mid()
    inner = (c * (x + (arb("0.044715") * x ** 3).mid()).mid()).mid()
    return (x * (1 + inner.tanh().mid()) / 2).mid()


def _relu(x: arb) -> arb:
    return x if x > 0 else arb(0)


_INV_SQRT2 = [None]  # 1/√2 at the working precision, set per pass
ACTIVATIONS: dict[Callable, Callable] = {gelu_erf: _gelu_erf, gelu_tanh: _gelu_tanh, relu: _relu}


class _MLP:
    def __init__(self, p: _Params, k: int, phi: Callable[[arb], arb]):
        d = p.cfg.d
        pre = f"steps.{k}.sublayer."
        hidden = p.hidden(pre + "W1")
        self.w1 = p.matrix(pre + "W1", d, hidden)
        self.w2 = p.matrix(pre + "W2", hidden, d)
        self.b1, self.b2 = p.bias(pre + "b1", hidden), p.bias(pre + "b2", d)
        self.phi = phi

    def __call__(self, u: arb_mat) -> arb_mat:
        z = _mid(u * self.w1)
        if self.b1 is not None:
            z = _mid(z + self.b1)
        h = arb_mat([[self.phi(z[i, j]) for j in range(z.ncols())] for i in range(z.nrows())])
        out = _mid(h * self.w2)
        return out if self.b2 is None else _mid(out + self.b2)


# ---- the recursion ---------------------------------------------------------------------------------------------
def flint_forward(c: OracleConfig, state: Mapping, x_list: list, dps: int,
                  rule: Callable[[OracleConfig, int], str] = step_rule,
                  gelu: Callable = gelu_erf) -> OracleResult:
    """The recursion of :func:`verify.engine.oracle.oracle_forward` on arb matrices at mpmath's bits for ``dps``.

    ``gelu`` must be one of the oracle's :func:`gelu_erf`/:func:`gelu_tanh` (mapped to their arb versions);
    anything else is a ValueError (``backend="auto"`` then falls back to mpmath). flint's global precision is
    restored afterwards.
    """
    if c.activation == "gelu" and gelu not in ACTIVATIONS:
        raise ValueError(f"gelu must be one of {[f.__name__ for f in ACTIVATIONS]} for the flint backend, got {gelu!r}")
    old_prec = flint.ctx.prec
    flint.ctx.prec = mpmath.libmp.dps_to_prec(dps)
    try:
        _INV_SQRT2[0] = (arb(1) / arb(2).sqrt()).mid()
        n = len(x_list)
        x = _arb_mat("x0", _validated("x0", x_list, n, c.d))
        p = _Params(state, c, n)
        phi = _relu if c.activation == "relu" else ACTIVATIONS[gelu]
        per_block = len(c.sublayers)
        alpha = (arb(c.deepnorm_alpha) if c.deepnorm_alpha is not None else arb(2 * c.n_blocks).root(4)).mid()
        eps_out = c.eps if c.eps_out is None else c.eps_out
        states = [x]
        for k, dt in enumerate(c.dts):
            r = rule(c, k)
            kind = c.sublayers[k % per_block]
            ell = k // per_block + 1
            sub = _Attention(p, k) if kind == "attn" else _MLP(p, k, phi)
            dt = arb(dt)
            if r in ("post", "deepnorm"):
                f = sub(x)
                ax = _mid(x * alpha) if r == "deepnorm" else x
                x = _norm(p, f"steps.{k}.norm_res", c.eps)(_mid(ax + _mid(f * dt)))
            elif r in ("pre", "peri", "none", "outnorm", "lns"):
                u = _norm(p, f"steps.{k}.norm_in", c.eps)(x) if r in ("pre", "peri", "lns") else x
                if r == "lns":
                    u = _mid(u * (arb(1) / arb(ell).sqrt()).mid())
                f = sub(u)
                if r in ("peri", "outnorm"):
                    f = _norm(p, f"steps.{k}.norm_out", eps_out)(f)
                x = _mid(x + _mid(f * dt))
            else:
                raise ValueError(f"rule returned an unknown step rule {r!r} for step {k}")
            states.append(x)
        out = _norm(p, "final", c.eps)(x) if c.final_norm else x
        with mpmath.workdps(dps):
            mp_states = [_mp_matrix(m) for m in states]
            mp_out = _mp_matrix(out) if c.final_norm else mp_states[-1]
    finally:
        flint.ctx.prec = old_prec
    return OracleResult(states=mp_states, output=mp_out, dps=dps)


def _mp_matrix(m: arb_mat) -> list[list[mpf]]:
    return [[_to_mpf(m[i, j]) for j in range(m.ncols())] for i in range(m.nrows())]
