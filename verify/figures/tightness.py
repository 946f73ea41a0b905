"""Figure 5 — tightness: the measured/bound ratios of every inequality in the catalogue, per theorem id.

What it shows: every registered check (``verify.checks.registry``) returns tallies; an ``inequality`` tally keeps
the largest measured/bound ratio over all its comparisons (``worst_ratio``: 1 means the bound was attained,
≪ 1 that it was never approached on the drawn instances) and a ``witness`` tally the ratio its witness
reached. This figure collects those numbers — from a fresh run of the checks at the quick level (seeded), from
records already computed (``records=``, the dict ``verify.checks.registry.run_checks`` returns or the JSON
``python -m verify --json`` writes) or from such a JSON file (``records_path=``) — and plots them per theorem
id on a log axis with the line ratio = 1.

How to read it: inequality ratios must stay ≤ 1 up to each tally's own round-off tolerance (a passing tally
guarantees measured ≤ bound·(1 + rtol) + atol); witnesses sit at ≈ 1 when the bound is attained. Witnesses
far above 1 are *non-vacuity* witnesses — instances deliberately taken outside a theorem's domain (twice the
admissible Δt, a float32 engine against a float64 tolerance) to show the bound is violated there; they are
drawn as arrows at the top of the axis with their value. Statistical witnesses (a Monte-Carlo mean against a
supremum) can exceed 1 by their sampling error. Only the worst ratio per tally is stored by ``verify.checks.record``,
so each point is one tally, not one comparison.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from verify.engine.devices import single_thread
from verify.figures import grad_norms as gn
from verify.figures import register_figure, style

NAME = "tightness"
TITLE = "Tightness: measured/bound ratio of every inequality and witness in the catalogue"
CHECK_SEED = 20251010  # the main job's default seed (python -m verify), offset by the data step's seed
# Fast subset (tests): cheap checks whose inequalities are exact algebra in float64 (rtol ≤ 1e-9).
FAST_IDS = ("N1", "F2", "B2")
KINDS = ("inequality", "witness")
# A witness ratio above this is a non-vacuity witness (taken outside the theorem's domain on purpose): the
# smallest such threshold in the suite is S1's 1.2; statistical witnesses exceed 1 by ≲ 1e-2.
NONVACUITY_RATIO = 1.1
AXIS_TOP = 10.0  # ratios above are drawn as arrows with their value


# Catalogue order of the groups (THEORY.md): norms, forward, engine, backward, criterion, UQ, neighbours, sanity;
# groups not listed follow alphabetically. Fixed here so the data do not depend on module import order.
GROUP_ORDER = ("N", "F", "E", "B", "S", "U", "X", "C")


def catalogue_key(theorem_id: str) -> tuple:
    group = theorem_id.rstrip("0123456789")
    number = theorem_id[len(group):]
    rank = GROUP_ORDER.index(group) if group in GROUP_ORDER else len(GROUP_ORDER)
    return (rank, group, int(number) if number else 0)


def _ratio(value) -> float:
    """A tally's worst_ratio as a float (``verify.checks.record`` writes non-finite values as strings)."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def collect(records: dict) -> list[dict]:
    """One row per inequality/witness tally: theorem id, check, kind, ratio, error/tolerance, verdict."""
    if not isinstance(records, dict) or "theorems" not in records:
        raise ValueError("records must be the dict of verify.checks.registry.run_checks (with a 'theorems' list)")
    rows = []
    for rec in sorted(records["theorems"], key=lambda r: catalogue_key(r["id"])):
        for t in rec.get("checks", []):
            if t.get("kind") not in KINDS:
                continue
            ratio = _ratio(t.get("worst_ratio"))
            rows.append({
                "id": rec["id"], "group": rec["id"].rstrip("0123456789"), "check": t.get("check", ""),
                "kind": t["kind"], "ratio": ratio, "error": _ratio(t.get("worst_error")),
                "verdict": t.get("verdict", "PASS" if t.get("failures", 0) == 0 else "FAIL"),
                "cases": int(t.get("cases", 0)),
                "nonvacuity": bool(t["kind"] == "witness" and ratio > NONVACUITY_RATIO),
            })
    return rows


def run_records(level: str = "quick", seed: int = 0, only=None) -> dict:
    """Run the registered checks (one torch thread, as the main job) and return their records."""
    from verify.checks.registry import Context, run_checks
    from verify.engine.strategies import load_profile_from_env

    load_profile_from_env()  # the project's deterministic hypothesis profile, as the main job loads it
    with single_thread():
        return run_checks(Context(level=level, seed=CHECK_SEED + int(seed)), list(only) if only else None,
                          progress=lambda *_: None)


def summarise(rows: list[dict]) -> dict:
    """Per theorem id: number of tallies, largest inequality ratio, smallest and largest witness ratio."""
    out: dict[str, dict] = {}
    for r in rows:
        s = out.setdefault(r["id"], {"tallies": 0, "inequality_max": None, "witness_min": None,
                                     "witness_max": None, "failed": 0})
        s["tallies"] += 1
        s["failed"] += r["verdict"] != "PASS"
        if not math.isfinite(r["ratio"]):
            continue
        if r["kind"] == "inequality":
            s["inequality_max"] = r["ratio"] if s["inequality_max"] is None else max(s["inequality_max"], r["ratio"])
        else:
            s["witness_min"] = r["ratio"] if s["witness_min"] is None else min(s["witness_min"], r["ratio"])
            s["witness_max"] = r["ratio"] if s["witness_max"] is None else max(s["witness_max"], r["ratio"])
    return out


def data(preset: str = "cpu", fast: bool = False, seed: int = 0, records: dict | None = None,
         records_path: str | Path | None = None, data_path: str | None = None) -> dict:
    """The tallies' ratios per theorem id. ``records`` or ``records_path`` reuse computed results; otherwise the
    checks run at the quick level (``fast``: only ``FAST_IDS``). ``preset`` and ``data_path`` (the training
    text of the GPT figures) do not change this figure."""
    if records is None and records_path is not None:
        p = Path(records_path)
        if not p.is_file():
            raise ValueError(f"records_path must name an existing JSON file, got {str(records_path)!r}")
        records = json.loads(p.read_text())
        source = f"json:{p.name}"
    elif records is None:
        records = run_records("quick", seed, FAST_IDS if fast else None)
        source = "run_checks"
    else:
        source = "records"
    rows = collect(records)
    return gn._clean({"name": NAME, "preset": preset, "fast": bool(fast), "seed": int(seed), "source": source,
                      "level": records.get("level"), "check_seed": records.get("seed"),
                      "ids": sorted((r["id"] for r in records["theorems"]), key=catalogue_key), "rows": rows,
                      "summary": summarise(rows)})


GROUP_COLOURS = {"N": "#7f7f7f", "F": "#2ca02c", "E": "#bcbd22", "B": "#1f77b4", "S": "#9467bd",
                 "U": "#8c564b", "X": "#17becf", "C": "#e377c2", "K": "#ff7f0e"}


def draw(data: dict, path: Path) -> list[Path]:
    """Strip plot of ratios per theorem id (log axis, line at 1), inequalities as dots, witnesses as stars."""
    import matplotlib.pyplot as plt

    ids = [i for i in data["ids"] if any(r["id"] == i for r in data["rows"])]
    pos = {tid: j for j, tid in enumerate(ids)}
    rows = [r for r in data["rows"] if r["ratio"] is not None and r["ratio"] > 0]
    lo = min([r["ratio"] for r in rows] + [0.5])
    bottom = 10 ** math.floor(math.log10(lo) - 0.2)
    with style.figure_style():
        w, h = style.figsize("double", rows=1.3)
        fig, ax = plt.subplots(figsize=(max(w, 0.3 * len(ids) + 1.2), h), layout="constrained")
        count: dict[str, int] = {}
        for r in rows:
            j = count.get(r["id"], 0)
            count[r["id"]] = j + 1
            # Deterministic jitter: alternate left/right of the id's column in order of appearance.
            x = pos[r["id"]] + (0.08 * ((j + 1) // 2) * (-1) ** j if j else 0.0)
            colour = GROUP_COLOURS.get(r["group"], "k")
            failed = r["verdict"] != "PASS"
            y = r["ratio"]
            if y > AXIS_TOP:
                ax.annotate(f"{y:.2g}", xy=(x, AXIS_TOP), xytext=(x, AXIS_TOP * 0.4), fontsize=5, ha="center",
                            arrowprops=dict(arrowstyle="->", color=colour, lw=0.7), color=colour)
                continue
            marker = "^" if r["nonvacuity"] else ("*" if r["kind"] == "witness" else "o")
            ax.scatter([x], [y], marker=marker, s={"*": 30, "^": 18, "o": 12}[marker],
                       facecolor="none" if r["nonvacuity"] else colour, edgecolor="red" if failed else colour,
                       linewidth=1.5 if failed else 0.7, alpha=0.85, zorder=3)
        ax.axhline(1.0, color="k", lw=0.8, zorder=2)
        ax.set_yscale("log")
        ax.set_ylim(bottom, AXIS_TOP)
        ax.set_xticks(range(len(ids)))
        ax.set_xticklabels(ids, fontsize=7)
        ax.set_xlim(-0.6, len(ids) - 0.4)
        ax.set_ylabel("measured / bound (worst per tally)")
        ax.grid(alpha=0.3, which="major", axis="y", lw=0.3)
        ax.scatter([], [], marker="o", s=12, color="0.4", label="inequality (≤ 1 + round-off)")
        ax.scatter([], [], marker="*", s=30, color="0.4", label="witness (≈ 1: bound attained)")
        ax.scatter([], [], marker="^", s=18, facecolor="none", edgecolor="0.4",
                   label=f"non-vacuity witness (outside the domain: > {NONVACUITY_RATIO:g}; arrows above {AXIS_TOP:g})")
        ax.legend(fontsize=6, loc="lower left")
        n_fail = sum(r["verdict"] != "PASS" for r in data["rows"])
        ax.set_title(f"Tightness of every inequality: worst measured/bound of {len(data['rows'])} tallies "
                     f"({n_fail} failing, outlined red) per theorem id")
        return style.save(fig, Path(path))


register_figure(NAME, title=TITLE, data=data, draw=draw)
