"""N — norm-layer geometry (LayerNorm and RMSNorm): output range, exact Jacobian, invariances.

Everything else in the catalogue rests on these facts. Provenance: standard facts about LayerNorm/RMSNorm,
stated and proved here (paper claim K1–K4 use them implicitly; our statement).
"""
from __future__ import annotations

import math

from theory._domain import require_nonnegative, require_width


def norm_output_bound(d: int, gamma_max: float, beta_norm: float = 0.0, eps: float = 0.0,
                      second_moment: float | None = None) -> float:
    """N1 — range of a norm layer: ‖N(z)‖₂ ≤ ‖γ‖_∞·√d·√(m/(m+ε)) + ‖β‖₂.

    ``m`` is the input's row statistic that the layer divides by: σ² = mean((z−μ)²) for LayerNorm,
    mean(z²) for RMSNorm (β = 0 there). With ``second_moment=None`` the bound is the supremum over all
    inputs, ‖γ‖_∞·√d + ‖β‖₂ (the factor √(m/(m+ε)) < 1 tends to 1 as m → ∞).
    Equality: constant γ and β = 0 (then ‖N(z)‖ = |γ|·√d·√(m/(m+ε)) exactly).

    Assumptions: d ≥ 2, ε ≥ 0, m ≥ 0 (m > 0 when ε = 0). Provenance: standard fact, our statement (used by
    paper claims K1, K2). Domain errors name the parameter.
    """
    require_width("d", d)
    require_nonnegative("gamma_max", gamma_max)
    require_nonnegative("beta_norm", beta_norm)
    require_nonnegative("eps", eps)
    if second_moment is None:
        factor = 1.0
    else:
        require_nonnegative("second_moment", second_moment)
        if second_moment == 0 and eps == 0:
            raise ValueError("second_moment must be > 0 when eps == 0 (the norm layer divides by zero)")
        factor = math.sqrt(second_moment / (second_moment + eps))
    return gamma_max * math.sqrt(d) * factor + beta_norm
