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
  or hand-made cases, e.g. an identity at fixed values); empty when it does not apply.
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
        if e > self.worst_error or not self.worst_case:
            self.worst_error = max(self.worst_error, e)
            if case is not None:
                self.worst_case = dict(case)

    def inequality(self, measured, bound, *, rtol, atol: float = 0.0, case: dict | None = None) -> "Tally":
        """Record ``measured ≤ bound`` elementwise, allowing ``rtol·|bound| + atol`` of round-off.

        ``rtol`` may be a scalar or an array broadcasting against the comparisons (a per-row round-off model).
        """
        m, b = np.broadcast_arrays(_as_array(measured), _as_array(bound))
        with np.errstate(divide="ignore", invalid="ignore"):  # a zero/inf tolerance gives ±inf/NaN: a failure
            err = (m - b) / (np.asarray(rtol) * np.abs(b) + atol)
            ratio = np.where(b > 0, m / b, np.where(m <= 0, 0.0, np.inf))
        self._update(err, ratio, case)
        return self

    def identity(self, value, reference, *, rtol, atol: float = 0.0, case: dict | None = None) -> "Tally":
        """Record ``value == reference`` elementwise within ``rtol·|reference| + atol``."""
        v, r = np.broadcast_arrays(_as_array(value), _as_array(reference))
        with np.errstate(divide="ignore", invalid="ignore"):
            err = np.abs(v - r) / (np.asarray(rtol) * np.abs(r) + atol)
        self._update(err, None, case)
        return self

    def band(self, estimate, theory, halfwidth, case: dict | None = None) -> "Tally":
        """Record ``|estimate − theory| ≤ halfwidth`` (a statistical band, see verify.engine.stats)."""
        e, t, h = np.broadcast_arrays(_as_array(estimate), _as_array(theory), _as_array(halfwidth))
        with np.errstate(divide="ignore", invalid="ignore"):
            err = np.abs(e - t) / h
            self._update(err, np.abs(e / t), case)
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
        return self.cases > 0 and self.failures == 0

    @property
    def verdict(self) -> str:
        if self.cases == 0:
            return "NOT RUN"
        return "PASS" if self.passed else "FAIL"

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["verdict"] = self.verdict
        d["worst_case"] = {k: _jsonable(v) for k, v in self.worst_case.items()}
        for key in ("worst_error", "worst_ratio"):
            d[key] = _jsonable(d[key])
        return d

    def summary(self) -> str:
        return (f"{self.theorem:<4} {self.check:<44} cases={self.cases:<5} tight={_fmt(self.worst_ratio):>9} "
                f"err/tol={_fmt(self.worst_error):>9}  {self.verdict}")


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
