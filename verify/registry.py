"""The theorem registry: every catalogue id (N1, F2, B3, …) registers the checks the main job runs.

A check module (``verify/checks/<group>.py``) decorates one function per theorem::

    @register("F2", title="peri-LN linear growth", statement="‖x_k,i‖ ≤ ‖x_0,i‖ + Σ Δt_j C_out,j",
              provenance="paper claim K2, our statement", theory=("theory.forward.peri_norm_bound",),
              tests=("tests/test_forward.py",))
    def check_f2(ctx: Context) -> list[Tally]:
        ...

The function receives a :class:`Context` (level, seed, device) and returns its tallies; the same function is
what the tests call, and what the meta-tests call with a deliberately wrong theory injected as a keyword
argument, so the main job, the tests and the meta-tests can never drift apart.
"""
from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable

from verify.record import Tally

LEVELS = ("quick", "full")

# Modules that hold registered checks, in report order. A later issue adds its module here.
CHECK_MODULES = (
    "verify.checks.norms",
    "verify.checks.forward",
    "verify.checks.init_moments",
    "verify.checks.oracle",
    "verify.checks.backward",
    "verify.checks.criterion",
    "verify.checks.uq",
    "verify.checks.trained",
    "verify.checks.neighbours",
    "verify.checks.sanity",
)


@dataclasses.dataclass(frozen=True)
class Context:
    """How hard and where to check: ``level`` scales the number of cases, ``seed`` fixes every draw."""

    level: str = "quick"
    seed: int = 20251010
    device: str = "cpu"

    def __post_init__(self):
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {self.level!r}")
        from verify.devices import resolve_device

        resolve_device(self.device)

    def examples(self, quick: int, full: int | None = None) -> int:
        """Number of hypothesis examples / Monte-Carlo repeats for this level."""
        return quick if self.level == "quick" else (full if full is not None else 5 * quick)


@dataclasses.dataclass(frozen=True)
class TheoremCheck:
    id: str
    title: str
    statement: str
    provenance: str
    run: Callable[[Context], list[Tally]]
    theory: tuple[str, ...] = ()
    tests: tuple[str, ...] = ()
    docs: str = "docs/theorems.md"


REGISTRY: dict[str, TheoremCheck] = {}


def register(theorem_id: str, *, title: str, statement: str, provenance: str, theory=(), tests=()):
    def deco(fn: Callable[[Context], list[Tally]]):
        if theorem_id in REGISTRY:
            raise ValueError(f"theorem id {theorem_id!r} registered twice")
        REGISTRY[theorem_id] = TheoremCheck(theorem_id, title, statement, provenance, fn, tuple(theory), tuple(tests))
        return fn

    return deco


def load_all() -> dict[str, TheoremCheck]:
    for name in CHECK_MODULES:
        importlib.import_module(name)
    return REGISTRY
