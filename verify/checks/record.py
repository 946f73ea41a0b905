"""Tallies: how a check accumulates its evidence, and how a verdict is reached.

A :class:`Tally` is one check of one theorem (an inequality over many instances, an identity, a witness or a
Monte-Carlo band). Every comparison is logged with its achieved error against its tolerance, pass or fail
(the neural-tangents habit), and the worst case is kept with a description of the instance that produced it.

Error conventions (``worst_error`` is always "error / tolerance", so ≤ 1 passes):
- inequality ``measured ≤ bound``: error = (measured − bound) / (rtol·|bound| + atol), clipped below at 0 only
  for the verdict; ``worst_ratio`` = max measured/bound is the tightness (1 means attained).
- identity ``value == reference``: error = |value − reference| / (rtol·|reference| + atol).
- band: error = |estimate − theory| / halfwidth.
- witness ``ratio ≥ threshold``: error = threshold / ratio (≤ 1 when the witness is tight enough).

What a tally is evidence *of* is stated with it (issue 13), so the ledger can count only independent evidence as
verification and report tightness per kind of instance:

- ``evidence``: ``"independent"`` (the numbers could disagree with the theory: an independent computation, an
  oracle, a Monte-Carlo estimate), ``"code-identity"`` (an identity that holds by construction of the code under
  test, e.g. linearity of the implementation or autograd checked against itself: a regression guard, not
  verification) or ``"calibrated"`` (the tolerance or allowance was fitted on data of the kind it then tests);
- ``instances``: which instances the comparisons ran on — ``"witness"`` (built to attain a bound), ``"random"``
  (drawn at random: hypothesis or Monte Carlo), ``"trained"`` (weights from training), ``"exact"`` (closed-form
  or hand-made cases, e.g. an identity at fixed values); empty when it does not apply. A tally holds one kind
  only, so tightness can be reported per kind (a witness at 1 says nothing about random instances).

How the classes are assigned (docs/theorems/evidence.md lists every tally that is not independent):

- *independent*: the two sides are computed by different code — a closed form of ``theory/`` against a zoo
  measurement, an oracle, finite differences, scipy's optimiser, a Monte-Carlo estimate against an expectation —
  so a wrong theorem or a wrong implementation shows up as a disagreement;
- *code-identity*: both sides come out of the same implementation (the zoo at rescaled arguments, autograd
  against autograd, one function at two precisions, a recomputation of an internal quantity, a theory function
  against itself); the equality follows from that code's algebra. It guards the code and the theory's
  bookkeeping (meta-tests still inject wrong mappings) but is no independent evidence;
- *calibrated*: an allowance was fitted on data of the kind it then tests.

Power of a band: ``band(..., effect=)`` names the size of the effect the band must resolve (default: the
theory value itself). A comparison whose half-width is ≥ |effect| cannot tell the theory from its absence, so
it is counted in ``no_power`` and is not evidence; a band tally none of whose comparisons has power reads
"NO POWER", not "PASS".

Tightness is summarised twice: ``worst_ratio`` (the largest measured/bound ratio, the instance closest to the
bound) and ``typical_ratio`` (the geometric mean over the comparisons with a positive ratio).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np


def _as_array(x) -> np.ndarray:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return x.detach().to("cpu", dtype=torch.float64).numpy().ravel()
    except ImportError:  # pragma: no cover
        pass
    return np.asarray(x, dtype=float).ravel()


EVIDENCE_CLASSES = ("independent", "code-identity", "calibrated")
INSTANCE_CLASSES = ("witness", "random", "trained", "exact", "")


@dataclasses.dataclass
class Tally:
    """Evidence for one check of one theorem."""

    theorem: str
    check: str
    kind: str  # "inequality" | "identity" | "band" | "witness"
    tolerance: str = ""  # why the tolerance has its value (one line)
    evidence: str = "independent"  # one of EVIDENCE_CLASSES
    instances: str = ""  # one of INSTANCE_CLASSES, or "" when it does not apply
    cases: int = 0
    comparisons: int = 0
    failures: int = 0
    worst_error: float = 0.0
    worst_ratio: float = float("nan")
    worst_case: dict[str, Any] = dataclasses.field(default_factory=dict)
    numbers: dict[str, Any] = dataclasses.field(default_factory=dict)
    no_power: int = 0  # band comparisons whose half-width is ≥ |effect| (no evidence either way)
    max_relative_halfwidth: float = float("nan")  # largest half-width / |effect| over the band comparisons
    log10_ratio_sum: float = 0.0  # Σ log10(ratio) over comparisons with a finite positive ratio
    ratio_count: int = 0

    def __post_init__(self):
        if self.evidence not in EVIDENCE_CLASSES:
            raise ValueError(f"evidence must be one of {EVIDENCE_CLASSES}, got {self.evidence!r}")
        if self.instances not in INSTANCE_CLASSES:
            raise ValueError(f"instances must be one of {INSTANCE_CLASSES}, got {self.instances!r}")

    # -- accumulation -----------------------------------------------------------------------------------------
    def _update(self, err: np.ndarray, ratio: np.ndarray | None, case: dict | None) -> None:
        self.cases += 1
        self.comparisons += int(err.size)
        bad = ~(err <= 1.0)  # NaN counts as a failure
        self.failures += int(bad.sum())
        e = float(np.nanmax(err)) if err.size and not np.all(np.isnan(err)) else float("inf")
        if np.any(np.isnan(err)):
            e = float("inf")
        if ratio is not None and ratio.size:
            r = float(np.nanmax(ratio)) if not np.all(np.isnan(ratio)) else float("nan")
            if math.isnan(self.worst_ratio) or r > self.worst_ratio:
                self.worst_ratio = r
            pos = ratio[np.isfinite(ratio) & (ratio > 0)]
            self.log10_ratio_sum += float(np.log10(pos).sum())
            self.ratio_count += int(pos.size)
        if e > self.worst_error or not self.worst_case:
            self.worst_error = max(self.worst_error, e)
            if case is not None:
                self.worst_case = dict(case)

    def inequality(self, measured, bound, *, rtol, atol: float = 0.0, case: dict | None = None,
                   offset=None) -> "Tally":
        """Record ``measured ≤ bound`` elementwise, allowing ``rtol·|bound| + atol`` of round-off.

        ``rtol`` may be a scalar or an array broadcasting against the comparisons (a per-row round-off model).
        ``offset``: a part that measurement and bound share by construction (‖x_0,i‖ in ‖x_k,i‖ ≤ ‖x_0,i‖ + Σ…,
        1 in a gain G = max_k M_k/M_0 ≥ 1). The verdict is unchanged; the tightness is reported on what remains,
        (measured − offset)/(bound − offset), so a bound is not called tight only because its growth term is small.
        """
        m, b = np.broadcast_arrays(_as_array(measured), _as_array(bound))
        with np.errstate(divide="ignore", invalid="ignore"):  # a zero/inf tolerance gives ±inf/NaN: a failure
            err = (m - b) / (np.asarray(rtol) * np.abs(b) + atol)
            if offset is None:
                ratio = np.where(b > 0, m / b, np.where(m <= 0, 0.0, np.inf))
            else:  # no growth term left (b = offset): nothing to be tight about, and round-off must not read as ∞
                off = np.broadcast_to(_as_array(offset), m.shape)
                ratio = np.where(b - off > 0, (m - off) / (b - off), np.nan)
        self._update(err, ratio, case)
        return self

    def identity(self, value, reference, *, rtol, atol: float = 0.0, case: dict | None = None) -> "Tally":
        """Record ``value == reference`` elementwise within ``rtol·|reference| + atol``."""
        v, r = np.broadcast_arrays(_as_array(value), _as_array(reference))
        with np.errstate(divide="ignore", invalid="ignore"):
            err = np.abs(v - r) / (np.asarray(rtol) * np.abs(r) + atol)
        self._update(err, None, case)
        return self

    def band(self, estimate, theory, halfwidth, case: dict | None = None, effect=None) -> "Tally":
        """Record ``|estimate − theory| ≤ halfwidth`` (a statistical band, see verify.engine.stats).

        ``effect`` (default: ``theory``) is the size of the predicted effect the band must resolve, e.g. an
        increment over its null value; comparisons with ``halfwidth ≥ |effect|`` are counted in ``no_power``.
        """
        e, t, h = np.broadcast_arrays(_as_array(estimate), _as_array(theory), _as_array(halfwidth))
        eff = np.abs(np.broadcast_to(_as_array(t if effect is None else effect), e.shape))
        with np.errstate(divide="ignore", invalid="ignore"):
            err = np.abs(e - t) / h
            rel = h / eff
            self._update(err, np.abs(e / t), case)
        self.no_power += int(np.sum(~(rel < 1.0)))  # NaN (0/0) has no power either
        finite = rel[np.isfinite(rel)]
        worst_rel = float(np.max(rel)) if rel.size and finite.size == rel.size else float("inf")
        if rel.size and (math.isnan(self.max_relative_halfwidth) or worst_rel > self.max_relative_halfwidth):
            self.max_relative_halfwidth = worst_rel
        return self

    def witness(self, ratio, *, threshold: float, case: dict | None = None) -> "Tally":
        """Record that a witness attains ``measured/bound = ratio ≥ threshold`` (tightness of an inequality)."""
        r = _as_array(ratio)
        with np.errstate(divide="ignore"):
            err = threshold / r
        self._update(err, r, case)
        return self

    def note(self, **numbers) -> "Tally":
        self.numbers.update({k: _jsonable(v) for k, v in numbers.items()})
        return self

    # -- verdict --------------------------------------------------------------------------------------------
    @property
    def passed(self) -> bool:
        """No comparison failed (a band without power passes too: it is not a failure, only no evidence)."""
        return self.cases > 0 and self.failures == 0

    @property
    def powered(self) -> bool:
        """At least one comparison could have told the theory apart (always true outside bands)."""
        return self.kind != "band" or self.no_power < self.comparisons

    @property
    def verifies(self) -> bool:
        """Counts as verification: passed, independent evidence, and (for a band) with power."""
        return self.passed and self.evidence == "independent" and self.powered

    @property
    def typical_ratio(self) -> float:
        """Geometric mean of the positive measured/bound ratios (NaN when there were none)."""
        return 10.0 ** (self.log10_ratio_sum / self.ratio_count) if self.ratio_count else float("nan")

    @property
    def verdict(self) -> str:
        if self.cases == 0:
            return "NOT RUN"
        if not self.passed:
            return "FAIL"
        return "PASS" if self.powered else "NO POWER"

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["verdict"] = self.verdict
        d["verifies"] = self.verifies
        d["typical_ratio"] = _jsonable(self.typical_ratio)
        d["worst_case"] = {k: _jsonable(v) for k, v in self.worst_case.items()}
        for key in ("worst_error", "worst_ratio", "max_relative_halfwidth"):
            d[key] = _jsonable(d[key])
        return d

    def summary(self) -> str:
        power = f" no-power {self.no_power}/{self.comparisons}" if self.no_power else ""
        return (f"{self.theorem:<4} {self.check:<44} cases={self.cases:<5} tight={_fmt(self.worst_ratio):>9} "
                f"err/tol={_fmt(self.worst_error):>9}  {self.evidence}/{self.instances or '-'}{power}  "
                f"{self.verdict}")


TIGHTNESS_COLUMNS = ("witness", "random", "trained")


def tightness_column(tally: dict) -> str | None:
    """Where a recorded tally (``Tally.as_dict()``) counts for tightness: ``"witness"``, ``"random"`` or
    ``"trained"`` (``"unstated"`` for an inequality of a check that does not state its instances), or None when it
    is not a tightness measurement — not independent evidence, not an inequality or witness, or a threshold
    check recorded as ``witness`` on non-witness instances (a trend such as a growth ratio, not tightness).
    Hand-made (``"exact"``) inequality cases count with the random ones."""
    kind, inst = tally.get("kind"), tally.get("instances", "")
    if kind not in ("inequality", "witness") or tally.get("evidence", "independent") != "independent":
        return None
    if kind == "witness":
        return "witness" if inst in ("witness", "") else None
    if inst in TIGHTNESS_COLUMNS:
        return inst
    return "unstated" if inst == "" else "random"


def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.3g}"


def _jsonable(v):
    if isinstance(v, (np.floating, np.integer)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, np.ndarray):
        return [_jsonable(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (str, int, bool)) or v is None:
        return v
    if isinstance(v, float):
        return v
    return repr(v)
