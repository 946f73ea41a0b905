"""C1 — the architecture sanity check (paper claim K8) classifies every zoo placement as its theorem predicts."""
from __future__ import annotations

from verify.check.core import THEORY_REGIME, ZOO_PLACEMENTS, Options, run
from verify.checks.record import Tally
from verify.checks.registry import Context, register


@register("C1", title="sanity check agrees with the theory on every zoo placement",
          statement="python -m verify.check classifies the forward growth of each zoo placement at initialisation "
                    "into the regime its theorem predicts (F1 bounded, F5 polynomial, F4 exponential, X4 "
                    "harmonic→polynomial) and finds the placement itself (or an equivalent one) nearest",
          provenance="paper claim K8, our statement",
          theory=("verify.check.core.THEORY_REGIME",), tests=("tests/test_check.py",))
def check_c1(ctx: Context, theory_regime: dict = THEORY_REGIME) -> list[Tally]:
    size = dict(d=16, depth=24, instances=16, n_tokens=3) if ctx.level == "quick" else \
        dict(d=32, depth=48, instances=32, n_tokens=4)
    agree = Tally("C1", "measured regime == theory regime", "identity",
                  tolerance="exact: a regime label either matches or not", evidence="independent", instances="random")
    # a threshold on the classifier's bootstrap confidence over random instances, not a tightness witness
    conf = Tally("C1", "bootstrap confidence of the regime >= 0.8", "witness",
                 tolerance="80 % of instance resamples must give the same regime", evidence="independent",
                 instances="random")
    for p in ZOO_PLACEMENTS:
        res = run(Options(placement=p, seed=ctx.seed % 2**31, grid=(0.1, 1.0), **size))
        case = {"placement": p, "measured": res["growth"]["regime"], "theory": theory_regime[p][0]}
        agree.identity(float(res["growth"]["regime"] == theory_regime[p][0]), 1.0, rtol=0.0, atol=0.5, case=case)
        conf.witness(res["growth"]["confidence"], threshold=0.8, case=case)
    return [agree, conf]
