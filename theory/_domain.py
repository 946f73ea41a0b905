"""Domain checks shared by every theory function.

Each check raises ``ValueError`` whose message starts with the parameter's name, so a user sees which
argument is wrong instead of a NaN three layers later. Nothing is clipped or coerced silently.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence

import numpy as np

PLACEMENTS = ("post", "pre", "peri", "none")
NORMS = ("layer", "rms")
ACTIVATIONS = ("relu", "gelu")


def _is_real_scalar(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Real):
        return True
    try:  # mpmath numbers are not numbers.Real
        import mpmath

        return isinstance(value, mpmath.mpf)
    except ImportError:  # pragma: no cover
        return False


def require_real(name: str, value):
    if not _is_real_scalar(value):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def require_positive(name: str, value):
    require_real(name, value)
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


def require_nonnegative(name: str, value):
    require_real(name, value)
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


def require_int(name: str, value, minimum: int):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def require_width(name: str, value):
    """Widths d of a norm layer: d >= 2 (a 1-D LayerNorm is identically β)."""
    return require_int(name, value, 2)


def require_choice(name: str, value, choices: Sequence[str]):
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def as_float_array(name: str, value) -> np.ndarray:
    """``np.asarray(value, dtype=float)``, but a string or other non-number is a ValueError naming ``name``."""
    if isinstance(value, (str, bytes)):
        raise ValueError(f"{name} must be a number or an array of numbers, got {value!r}")
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number or an array of numbers, got {value!r} ({exc})") from exc


def as_vector(name: str, value) -> np.ndarray:
    """A scalar or 1-D sequence of numbers as a 1-D float array (per-step constants); ValueError naming ``name``."""
    arr = np.atleast_1d(as_float_array(name, value))
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a number or a 1-D sequence (one per step), got shape {arr.shape}")
    return arr


def require_finite_array(name: str, value, ndim: int | None = None) -> np.ndarray:
    arr = as_float_array(name, value)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def step_sizes(dt, n_steps: int, name: str = "dt") -> np.ndarray:
    """Per-step sizes Δt_k (k = 0..n_steps-1) from a scalar or a sequence; every Δt_k must be > 0."""
    n_steps = require_int("n_steps", n_steps, 1)
    if _is_real_scalar(dt):
        require_positive(name, dt)
        return np.full(n_steps, float(dt))
    if isinstance(dt, (str, bytes)) or not isinstance(dt, (Sequence, np.ndarray, Iterable)):
        raise ValueError(f"{name} must be a positive number or a sequence of them, got {dt!r}")
    arr = as_float_array(name, list(dt))
    if arr.shape != (n_steps,):
        raise ValueError(f"{name} must have one entry per step ({n_steps}), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    if not np.all(arr > 0):
        raise ValueError(f"{name} entries must all be > 0, got min {arr.min()!r}")
    return arr
