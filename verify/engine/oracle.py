"""The high-precision oracle: the zoo's forward recursion re-implemented in mpmath for ONE instance.

What it is for: an independent reference for :class:`verify.engine.zoo.Stack`. It reads nothing from the zoo's code —
only the config's documented fields and the instance's parameter values (``Stack.instance_state(i)``, names as
``named_parameters`` gives them) — and evaluates the step rules written in the zoo's module docstring in
``mpmath`` at ≥ 50 significant digits. Every float64 parameter and input converts to an ``mpf`` exactly, so the
oracle computes the exact (to 50 digits) image of *the same data* the float64 engine sees: the difference
between the two is the engine's round-off and nothing else (check E1, ``verify/checks/oracle.py``).

The oracle certifies itself with a precision ladder (:func:`precision_ladder`): the recursion is evaluated at
50 and 70 digits and the two must agree to ~45 digits (50 minus the digits the instance's conditioning can eat).

Backends: the reference one is plain Python over lists of ``mpf`` (dot products through ``mpmath.fdot``); a
depth-64, width-16, 4-token pass takes ~0.6 s on gmpy2. When python-flint is installed (extra ``fast``),
``backend="auto"`` runs the same recursion on arb matrices (:mod:`verify.engine.oracle_flint`), several times
faster, with the same 50-digit agreement (``python -m verify.bench`` measures both). It imports no torch, so the
benchmark can time it in a subprocess with ``MPMATH_NOGMPY=1``.

Step rules (row vectors, as in the zoo): for step k with sublayer F, size Δt_k, norm N,

    post      X⁺ = N(X + Δt F(X))            deepnorm  X⁺ = N(α X + Δt F(X)),  α = (2L)^{1/4} by default
    pre       X⁺ = X + Δt F(N(X))            lns       X⁺ = X + Δt F(N(X)/√ℓ),  ℓ = 1-based block index
    peri      X⁺ = X + Δt N_out(F(N_in(X)))  outnorm   X⁺ = X + Δt N_out(F(X))
    none      X⁺ = X + Δt F(X)               mixln     post in the first P blocks, pre afterwards
                                                       (P = mixln_post_blocks, default max(1, ⌊L/4⌋) if L ≥ 2)
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence

import mpmath
from mpmath import mpf

# The config fields the oracle reads (a StackConfig, or any mapping/object carrying these names).
CONFIG_FIELDS = ("d", "n_blocks", "placement", "n_heads", "sublayers", "norm", "eps", "eps_out", "activation",
                 "causal", "dt", "bias", "final_norm", "mixln_post_blocks", "deepnorm_alpha")
PLACEMENTS = ("post", "pre", "peri", "none", "outnorm", "deepnorm", "mixln", "lns")
LADDER_DPS = (50, 70)

Row = list  # list[mpf]
Matrix = list  # list[Row], row-major


# ---- config ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class OracleConfig:
    """The config fields the recursion needs, copied out of a StackConfig (or a dict) and validated."""

    d: int
    n_blocks: int
    placement: str
    n_heads: int
    sublayers: tuple[str, ...]
    norm: str
    eps: float
    eps_out: float | None
    activation: str
    causal: bool
    dt: float | tuple[float, ...]
    bias: bool
    final_norm: bool
    mixln_post_blocks: int | None
    deepnorm_alpha: float | None

    @classmethod
    def of(cls, cfg) -> "OracleConfig":
        if isinstance(cfg, OracleConfig):
            return cfg
        get = cfg.get if isinstance(cfg, Mapping) else (lambda k: getattr(cfg, k))
        try:
            fields = {k: get(k) for k in CONFIG_FIELDS}
        except (AttributeError, KeyError) as exc:
            raise ValueError(f"cfg must carry the fields {CONFIG_FIELDS}; missing {exc}") from exc
        fields["sublayers"] = tuple(fields["sublayers"])
        if not isinstance(fields["dt"], (int, float)):
            fields["dt"] = tuple(float(v) for v in fields["dt"])
        out = cls(**fields)
        out._validate()
        return out

    def _validate(self) -> None:
        if self.placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {self.placement!r}")
        if self.norm not in ("layer", "rms"):
            raise ValueError(f"norm must be 'layer' or 'rms', got {self.norm!r}")
        if self.activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu', got {self.activation!r}")
        if self.d < 2 or self.n_blocks < 1 or self.n_heads < 1 or self.d % self.n_heads:
            raise ValueError(f"d, n_blocks, n_heads must satisfy d >= 2, n_blocks >= 1, n_heads | d; got "
                             f"d={self.d}, n_blocks={self.n_blocks}, n_heads={self.n_heads}")
        if len(self.dts) != self.n_steps or not all(v > 0 and math.isfinite(v) for v in self.dts):
            raise ValueError(f"dt must be positive, one per step ({self.n_steps}), got {self.dt!r}")

    @property
    def n_steps(self) -> int:
        return self.n_blocks * len(self.sublayers)

    @property
    def dts(self) -> tuple[float, ...]:
        return self.dt if isinstance(self.dt, tuple) else (float(self.dt),) * self.n_steps

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def step_rule(cfg: OracleConfig, k: int) -> str:
    """The residual rule step k follows, from the placement (Mix-LN resolved to post/pre by block)."""
    block = k // len(cfg.sublayers)
    if cfg.placement == "mixln":
        if cfg.mixln_post_blocks is not None:
            n_post = cfg.mixln_post_blocks
        else:
            n_post = max(1, cfg.n_blocks // 4) if cfg.n_blocks >= 2 else 0
        return "post" if block < n_post else "pre"
    return cfg.placement


# ---- activations -------------------------------------------------------------------------------------------
def gelu_erf(x: mpf) -> mpf:
    """Exact GELU, x·Φ(x) = x/2·(1 + erf(x/√2))."""
    return x * (1 + mpmath.erf(x / mpmath.sqrt(2))) / 2


def gelu_tanh(x: mpf) -> mpf:
    """The tanh approximation of GELU (NOT what the zoo computes; for meta-tests that must fail)."""
    return x * (1 + mpmath.tanh(mpmath.sqrt(2 / mpmath.pi) * (x + mpf("0.044715") * x ** 3))) / 2


def relu(x: mpf) -> mpf:
    return x if x > 0 else mpf(0)


# ---- exact conversion ----------------------------------------------------------------------------------------
def _to_list(value):
    return value.tolist() if hasattr(value, "tolist") else value


def _mp_vector(name: str, value, length: int) -> Row:
    v = _to_list(value)
    if not isinstance(v, Sequence) or len(v) != length:
        raise ValueError(f"{name} must be a vector of length {length}")
    for a in v:
        if isinstance(a, bool) or not isinstance(a, (int, float, mpf)):
            raise ValueError(f"{name} holds a non-numeric entry {a!r}")
        if not (math.isfinite(a) if not isinstance(a, mpf) else mpmath.isfinite(a)):
            raise ValueError(f"{name} contains NaN or inf")
    return [mpf(a) for a in v]  # exact for float64 entries (mpf holds ≥ 53 bits at every precision used here)


def _mp_matrix(name: str, value, rows: int, cols: int) -> Matrix:
    v = _to_list(value)
    if not isinstance(v, Sequence) or len(v) != rows:
        raise ValueError(f"{name} must be a {rows}×{cols} matrix")
    return [_mp_vector(name, r, cols) for r in v]


# ---- building blocks -----------------------------------------------------------------------------------------
def _transpose(m: Matrix) -> Matrix:
    return [list(col) for col in zip(*m)]


def _matmul(x: Matrix, w_cols: Matrix) -> Matrix:
    """x (n×a) times W given by its columns (b columns of length a)."""
    return [[mpmath.fdot(row, col) for col in w_cols] for row in x]


def _add_row(x: Matrix, b: Row | None) -> Matrix:
    return x if b is None else [[a + c for a, c in zip(row, b)] for row in x]


class UndefinedNormError(ValueError):
    """A norm layer with ε = 0 met a row it cannot normalise (zero variance / all zeros): 0/0, no value exists."""


@dataclasses.dataclass
class _Norm:
    kind: str
    eps: mpf
    gamma: Row
    beta: Row | None

    def row(self, z: Row) -> Row:
        d = len(z)
        if self.kind == "layer":
            mu = mpmath.fsum(z) / d
            c = [a - mu for a in z]
            s = mpmath.sqrt(mpmath.fsum(a * a for a in c) / d + self.eps)
            if not s:
                raise UndefinedNormError("x: a LayerNorm with eps = 0 received a constant row (0/0)")
            return [g * a / s + b for g, a, b in zip(self.gamma, c, self.beta)]
        r = mpmath.sqrt(mpmath.fsum(a * a for a in z) / d + self.eps)
        if not r:
            raise UndefinedNormError("x: an RMSNorm with eps = 0 received a zero row (0/0)")
        return [g * a / r for g, a in zip(self.gamma, z)]

    def __call__(self, x: Matrix) -> Matrix:
        return [self.row(z) for z in x]


class _Params:
    """Parameter lookup by ``named_parameters`` name, converted exactly, with errors naming what is missing."""

    def __init__(self, state: Mapping, cfg: OracleConfig):
        if not isinstance(state, Mapping):
            raise ValueError(f"state must be a mapping name -> array (Stack.instance_state(i)), got {type(state)}")
        self.state, self.cfg = state, cfg

    def _get(self, name: str):
        if name not in self.state:
            raise ValueError(f"state is missing parameter {name!r}")
        return self.state[name]

    def vector(self, name: str, length: int) -> Row:
        return _mp_vector(name, self._get(name), length)

    def columns(self, name: str, rows: int, cols: int) -> Matrix:
        return _transpose(_mp_matrix(name, self._get(name), rows, cols))

    def norm(self, prefix: str, eps: float) -> _Norm:
        d, kind = self.cfg.d, self.cfg.norm
        beta = self.vector(f"{prefix}.beta", d) if kind == "layer" else None
        return _Norm(kind, mpf(eps), self.vector(f"{prefix}.gamma", d), beta)

    def bias(self, name: str, length: int) -> Row | None:
        return self.vector(name, length) if self.cfg.bias else None


def _attention(p: _Params, k: int, u: Matrix, causal: bool, n_heads: int) -> Matrix:
    d = len(u[0])
    pre = f"steps.{k}.sublayer."
    q, kk, v = (_matmul(u, p.columns(pre + w, d, d)) for w in ("W_q", "W_k", "W_v"))
    dh = d // n_heads
    scale = 1 / mpmath.sqrt(dh)
    n = len(u)
    heads = [[mpf(0)] * d for _ in range(n)]
    for h in range(n_heads):
        sl = slice(h * dh, (h + 1) * dh)
        for i in range(n):
            keys = range(i + 1) if causal else range(n)
            scores = [mpmath.fdot(q[i][sl], kk[j][sl]) * scale for j in keys]
            top = max(scores)
            w = [mpmath.exp(s - top) for s in scores]
            total = mpmath.fsum(w)
            for c in range(dh):
                heads[i][h * dh + c] = mpmath.fdot(w, [v[j][h * dh + c] for j in keys]) / total
    return _add_row(_matmul(heads, p.columns(pre + "W_o", d, d)), p.bias(pre + "b_o", d))


def _mlp(p: _Params, k: int, u: Matrix, phi: Callable[[mpf], mpf]) -> Matrix:
    d = len(u[0])
    pre = f"steps.{k}.sublayer."
    w1 = p.state.get(pre + "W1")
    if w1 is None:
        raise ValueError(f"state is missing parameter {pre + 'W1'!r}")
    hidden = len(_to_list(w1)[0])
    z = _add_row(_matmul(u, p.columns(pre + "W1", d, hidden)), p.bias(pre + "b1", hidden))
    h = [[phi(a) for a in row] for row in z]
    return _add_row(_matmul(h, p.columns(pre + "W2", hidden, d)), p.bias(pre + "b2", d))


# ---- the recursion ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class OracleResult:
    """The oracle's trajectory X_0..X_K (each n×d, rows of mpf) and its output (after the final norm, if any)."""

    states: list[Matrix]
    output: Matrix
    dps: int

    def as_floats(self) -> list[list[list[float]]]:
        """States followed by the output (when a final norm exists), rounded to float64."""
        mats = self.states + ([self.output] if self.output is not self.states[-1] else [])
        return [[[float(a) for a in row] for row in m] for m in mats]


BACKENDS = ("auto", "mpmath", "flint")


def flint_available() -> bool:
    """Whether python-flint (the optional extra ``fast``) is importable."""
    try:
        import flint  # noqa: F401
    except ImportError:
        return False
    return True


def oracle_forward(cfg, state: Mapping, x0, *, dps: int = 50,
                   rule: Callable[[OracleConfig, int], str] = step_rule,
                   gelu: Callable[[mpf], mpf] = gelu_erf, backend: str = "auto") -> OracleResult:
    """Run the zoo's recursion for one instance at ``dps`` significant digits.

    ``cfg``: a StackConfig (or mapping with :data:`CONFIG_FIELDS`); ``state``: ``Stack.instance_state(i)``
    (tensors, arrays or nested lists of float64); ``x0``: the instance's input, shape (n, d) (one batch element).
    ``rule`` and ``gelu`` are injectable so meta-tests can run a deliberately wrong oracle (see
    :func:`gelu_tanh`). Global mpmath precision is untouched (``mpmath.workdps``).

    ``backend``: ``"mpmath"`` (this module, plain Python over ``mpf``), ``"flint"`` (python-flint's arb matrices at
    the same bits, :mod:`verify.engine.oracle_flint`, ~5–10× faster; only for ``gelu`` in
    {:func:`gelu_erf`, :func:`gelu_tanh`}) or ``"auto"`` (flint when it is installed and ``gelu`` is one of those,
    mpmath otherwise). Both return rows of ``mpf``; they agree to ~45 digits at ``dps=50``.
    """
    c = OracleConfig.of(cfg)
    if isinstance(dps, bool) or not isinstance(dps, int) or dps < 20:
        raise ValueError(f"dps must be an integer >= 20, got {dps!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    x_list = _to_list(x0)
    if not isinstance(x_list, Sequence) or not x_list:
        raise ValueError("x0 must be an (n, d) array with n >= 1")
    if backend == "auto":
        backend = "flint" if flint_available() and (c.activation == "relu" or gelu in (gelu_erf, gelu_tanh)) \
            else "mpmath"
    if backend == "flint":
        if not flint_available():
            raise ValueError("backend 'flint' needs python-flint (pip install 'ln-stability[fast]')")
        from verify.engine.oracle_flint import flint_forward

        return flint_forward(c, state, x_list, dps, rule=rule, gelu=gelu)
    with mpmath.workdps(dps):
        x = _mp_matrix("x0", x_list, len(x_list), c.d)
        p = _Params(state, c)
        phi = relu if c.activation == "relu" else gelu
        per_block = len(c.sublayers)
        alpha = (mpf(c.deepnorm_alpha) if c.deepnorm_alpha is not None
                 else mpmath.root(2 * c.n_blocks, 4))
        eps_out = c.eps if c.eps_out is None else c.eps_out
        states = [x]
        for k, dt in enumerate(c.dts):
            r = rule(c, k)
            kind = c.sublayers[k % per_block]
            ell = k // per_block + 1

            def sublayer(u, k=k, kind=kind):
                if kind == "attn":
                    return _attention(p, k, u, c.causal, c.n_heads)
                return _mlp(p, k, u, phi)

            dt = mpf(dt)
            if r in ("post", "deepnorm"):
                a = alpha if r == "deepnorm" else 1
                f = sublayer(x)
                y = [[a * xi + dt * fi for xi, fi in zip(xr, fr)] for xr, fr in zip(x, f)]
                x = p.norm(f"steps.{k}.norm_res", c.eps)(y)
            elif r in ("pre", "peri", "none", "outnorm", "lns"):
                u = p.norm(f"steps.{k}.norm_in", c.eps)(x) if r in ("pre", "peri", "lns") else x
                if r == "lns":
                    s = 1 / mpmath.sqrt(ell)
                    u = [[a * s for a in row] for row in u]
                f = sublayer(u)
                if r in ("peri", "outnorm"):
                    f = p.norm(f"steps.{k}.norm_out", eps_out)(f)
                x = [[xi + dt * fi for xi, fi in zip(xr, fr)] for xr, fr in zip(x, f)]
            else:
                raise ValueError(f"rule returned an unknown step rule {r!r} for step {k}")
            states.append(x)
        out = p.norm("final", c.eps)(x) if c.final_norm else x
    return OracleResult(states=states, output=out, dps=dps)


# ---- comparisons -----------------------------------------------------------------------------------------------
def _mats(result: OracleResult) -> list[Matrix]:
    return result.states + ([result.output] if result.output is not result.states[-1] else [])


def row_errors(values: Sequence, result: OracleResult) -> list[list[float]]:
    """Exact ‖value_row − oracle_row‖_∞ for every state (and the output) and row, as floats.

    ``values``: the engine's states X_0..X_K (and output when a final norm exists) for this instance, each (n, d)
    (tensors or nested lists). The float64 entries convert exactly and the subtraction runs at the oracle's
    precision + 10 digits, so the returned errors carry no round-off of their own beyond the last float rounding.
    """
    mats = _mats(result)
    if len(values) != len(mats):
        raise ValueError(f"values must hold {len(mats)} states, got {len(values)}")
    out = []
    with mpmath.workdps(result.dps + 10):
        for v, m in zip(values, mats):
            rows = _to_list(v)
            out.append([_max_abs_difference(vr, mr) for vr, mr in zip(rows, m)])
    return out


def _max_abs_difference(values: Sequence, reference: Row) -> float:
    """max_j |values_j − reference_j| with NaN propagated (Python's max would drop a NaN depending on order)."""
    worst = mpf(0)
    for a, b in zip(values, reference):
        if not math.isfinite(a):
            return math.nan if math.isnan(a) else math.inf
        worst = max(worst, abs(mpf(a) - b))
    return float(worst)


def row_scales(result: OracleResult) -> list[list[float]]:
    """‖oracle_row‖_∞ for every state (and the output) and row."""
    return [[float(max(abs(a) for a in row)) for row in m] for m in _mats(result)]


@dataclasses.dataclass
class Ladder:
    """Two oracle runs at rising precision and how many digits they share."""

    low: OracleResult
    high: OracleResult
    differences: list[list[float]]  # ‖low_row − high_row‖_∞ per state and row
    scales: list[list[float]]  # ‖high_row‖_∞
    digits: float  # min over rows of −log10(difference/scale) (inf when identical)


def precision_ladder(cfg, state: Mapping, x0, *, dps: Sequence[int] = LADDER_DPS,
                     forward: Callable[..., OracleResult] = oracle_forward, **kw) -> Ladder:
    """Run ``forward`` (default :func:`oracle_forward`) at ``dps[0]`` and ``dps[1]`` digits; measure agreement."""
    lo_dps, hi_dps = dps
    if not hi_dps > lo_dps:
        raise ValueError(f"dps must rise, got {tuple(dps)}")
    lo = forward(cfg, state, x0, dps=lo_dps, **kw)
    hi = forward(cfg, state, x0, dps=hi_dps, **kw)
    return compare_ladder(lo, hi)


def compare_ladder(lo: OracleResult, hi: OracleResult) -> Ladder:
    """How many digits two oracle runs (``hi`` at the higher precision) share, row by row."""
    if not hi.dps > lo.dps:
        raise ValueError(f"hi must run at a higher precision than lo, got {lo.dps} and {hi.dps}")
    hi_dps = hi.dps
    diffs, digits = [], math.inf
    with mpmath.workdps(hi_dps + 10):
        for ml, mh in zip(_mats(lo), _mats(hi)):
            rows = []
            for rl, rh in zip(ml, mh):
                diff = max(abs(a - b) for a, b in zip(rl, rh))
                scale = max(abs(b) for b in rh)
                rows.append(float(diff))
                if diff > 0 and scale > 0:
                    digits = min(digits, float(-mpmath.log10(diff / scale)))
            diffs.append(rows)
    return Ladder(low=lo, high=hi, differences=diffs, scales=row_scales(hi), digits=digits)
