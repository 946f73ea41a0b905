"""One style for every figure: sizes, fonts, colours per placement, and the save step (PDF + PNG).

Measurement is drawn as solid lines with markers (bands as translucent fills), theory as dashed or dotted lines
of the same colour on top (higher z-order), so a reader always sees the bound over the data.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import matplotlib

# Column widths in inches (a two-column paper layout).
SINGLE = 3.4
DOUBLE = 7.0
ASPECT = 0.62

RC = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 6.5,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.2,
    "lines.markersize": 3,
    "savefig.bbox": "tight",
    "pdf.fonttype": 42,
    "svg.hashsalt": "ln-stability",
}
DPI = 200

COLORS = {
    "pre": "#1f77b4",
    "peri": "#2ca02c",
    "peri_small_dt": "#17becf",
    "post": "#d62728",
    "none": "#7f7f7f",
    "outnorm": "#9467bd",
}
MEASURED = dict(linestyle="-", marker="o", zorder=2)
THEORY = dict(linestyle="--", linewidth=1.0, zorder=3)
THEORY_ALT = dict(linestyle=":", linewidth=1.3, zorder=3)


def color(key: str) -> str:
    return COLORS.get(key, "#333333")


def figsize(width: str = "double", rows: int = 1) -> tuple[float, float]:
    w = DOUBLE if width == "double" else SINGLE
    return (w, w * ASPECT * (0.55 if width == "double" else 1.0) * rows)


@contextmanager
def figure_style():
    with matplotlib.rc_context(RC):
        yield


def save(fig, path: Path) -> list[Path]:
    """Write ``path``.pdf and ``path``.png (metadata without dates, so reruns give identical PDFs)."""
    path = Path(path)
    written = []
    for ext in ("pdf", "png"):
        target = path.with_suffix(f".{ext}")
        meta = {"CreationDate": None} if ext == "pdf" else {}
        fig.savefig(target, dpi=DPI, metadata=meta)
        written.append(target)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return written
