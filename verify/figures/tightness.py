"""Figure 5 — tightness per theorem and per kind of instance: where a bound is attained and where it is loose.

What it shows: every registered check (``verify.checks.registry``) returns tallies, and each tally states the kind
of instances it ran on (``verify.checks.record``: ``witness`` constructions built to attain a bound, ``random``
draws, ``trained`` models). For every theorem id the figure draws three columns — witness, random, trained — on
a log axis with the line ratio = 1: per independent inequality tally its worst (largest) measured/bound ratio
(filled marker: the instance closest to the bound) and its typical ratio (open marker: the geometric mean over the
comparisons), joined by a line; witness tallies as stars. So a reader sees that a witness reaches 1 while random
instances sit at 1e-2 … 1e-19 of the same bound. Data come from a fresh run of the checks at the quick level
(seeded), from records already computed (``records=``) or from the JSON ``python -m verify --json`` writes
(``records_path=``).

What is left out, and why: code identities and calibrated tallies (not evidence, ``docs/theorems/evidence.md``);
threshold checks recorded as ``witness`` on non-witness instances (C1's bootstrap confidence, F6's λ → 0 growth
ratios: trends, not tightness). Inequalities of the form ‖x_k‖ ≤ ‖x_0‖ + growth report the growth term's
tightness (``Tally.inequality(offset=)``), so a bound is not drawn at 1 only because its growth term is small.

How to read it: inequality ratios must stay ≤ 1 up to each tally's round-off tolerance; witnesses sit at ≈ 1.
Witnesses far above 1 are *non-vacuity* witnesses — instances deliberately taken outside a theorem's domain
(twice the admissible Δt, a float32 engine against a float64 tolerance) to show the bound is violated there; they
are drawn as arrows at the top with their value. Tallies that ran on instances of an unstated kind (an older
check) are drawn in grey in the random column and counted in the title.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from verify.checks.record import TIGHTNESS_COLUMNS as INSTANCE_COLUMNS
from verify.checks.record import tightness_column
from verify.engine.devices import single_thread
from verify.figures import grad_norms as gn
from verify.figures import register_figure, style

NAME = "tightness"
TITLE = "Tightness per theorem: witness, random and trained instances (worst and typical measured/bound)"
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


column_of = tightness_column  # the rule lives with the tallies (verify.checks.record)


def collect(records: dict) -> list[dict]:
    """One row per tightness tally: theorem id, check, kind, instances, worst and typical ratio, error, verdict."""
    if not isinstance(records, dict) or "theorems" not in records:
        raise ValueError("records must be the dict of verify.checks.registry.run_checks (with a 'theorems' list)")
    rows = []
    for rec in sorted(records["theorems"], key=lambda r: catalogue_key(r["id"])):
        for t in rec.get("checks", []):
            column = column_of(t)
            if column is None:
                continue
            ratio = _ratio(t.get("worst_ratio"))
            rows.append({
                "id": rec["id"], "group": rec["id"].rstrip("0123456789"), "check": t.get("check", ""),
                "kind": t["kind"], "instances": column, "ratio": ratio, "typical": _ratio(t.get("typical_ratio")),
                "error": _ratio(t.get("worst_error")),
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


def _fold(old, new, pick):
    if new is None or not math.isfinite(new):
        return old
    return new if old is None else pick(old, new)


def summarise(rows: list[dict]) -> dict:
    """Per theorem id and column: tallies, the largest worst-ratio, the smallest typical ratio; plus the largest
    inequality ratio and the smallest witness ratio over all columns (the old summary's fields)."""
    out: dict[str, dict] = {}
    for r in rows:
        s = out.setdefault(r["id"], {"tallies": 0, "inequality_max": None, "witness_min": None,
                                     "witness_max": None, "failed": 0, "columns": {}})
        s["tallies"] += 1
        s["failed"] += r["verdict"] != "PASS"
        col = s["columns"].setdefault(r["instances"], {"tallies": 0, "worst_max": None, "typical_min": None})
        col["tallies"] += 1
        if r["kind"] == "inequality" or not r["nonvacuity"]:
            col["worst_max"] = _fold(col["worst_max"], r["ratio"], max)
            col["typical_min"] = _fold(col["typical_min"], r["typical"], min)
        if not math.isfinite(r["ratio"]):
            continue
        if r["kind"] == "inequality":
            s["inequality_max"] = _fold(s["inequality_max"], r["ratio"], max)
        else:
            s["witness_min"] = _fold(s["witness_min"], r["ratio"], min)
            s["witness_max"] = _fold(s["witness_max"], r["ratio"], max)
    return out


def data(preset: str = "cpu", fast: bool = False, seed: int = 0, records: dict | None = None,
         records_path: str | Path | None = None, data_path: str | None = None) -> dict:
    """The tallies' ratios per theorem id and instance kind. ``records`` or ``records_path`` reuse computed
    results; otherwise the checks run at the quick level (``fast``: only ``FAST_IDS``). ``preset`` and
    ``data_path`` (the training text of the GPT figures) do not change this figure."""
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
COLUMN_STYLE = {  # offset within the id's slot, marker, colour
    "witness": (-0.27, "*", "#d62728"), "random": (0.0, "o", "#1f77b4"), "trained": (0.27, "s", "#2ca02c"),
    "unstated": (0.0, "o", "0.6"),
}


def draw(data: dict, path: Path) -> list[Path]:
    """Per theorem id three columns (witness, random, trained) on a log axis with the line at 1: worst ratio
    filled, typical ratio open, joined by a line; non-vacuity witnesses as arrows at the top."""
    import matplotlib.pyplot as plt

    ids = [i for i in data["ids"] if any(r["id"] == i for r in data["rows"])]
    pos = {tid: j for j, tid in enumerate(ids)}
    rows = [r for r in data["rows"] if r["ratio"] is not None and math.isfinite(r["ratio"]) and r["ratio"] > 0]
    values = [r["ratio"] for r in rows] + [r["typical"] for r in rows if r["typical"] and r["typical"] > 0]
    lo = min(values + [0.5])
    bottom = 10 ** math.floor(math.log10(lo) - 0.3)
    with style.figure_style():
        w, h = style.figsize("double", rows=1.5)
        fig, ax = plt.subplots(figsize=(max(w, 0.42 * len(ids) + 1.4), h), layout="constrained")
        count: dict[tuple, int] = {}
        for r in rows:
            dx, marker, colour = COLUMN_STYLE[r["instances"]]
            key = (r["id"], r["instances"])
            j = count.get(key, 0)
            count[key] = j + 1
            # Deterministic jitter within the column: alternate left/right in order of appearance.
            x = pos[r["id"]] + dx + (0.035 * ((j + 1) // 2) * (-1) ** j if j else 0.0)
            failed = r["verdict"] not in ("PASS", "NO POWER")
            y = r["ratio"]
            if y > AXIS_TOP:
                ax.annotate(f"{y:.2g}", xy=(x, AXIS_TOP), xytext=(x, AXIS_TOP * 0.4), fontsize=5, ha="center",
                            arrowprops=dict(arrowstyle="->", color=colour, lw=0.7), color=colour)
                continue
            typical = r["typical"]
            if r["kind"] == "inequality" and typical and 0 < typical < y:
                ax.plot([x, x], [typical, y], color=colour, lw=0.6, alpha=0.6, zorder=2)
                ax.scatter([x], [typical], marker=marker, s=10, facecolor="none", edgecolor=colour, linewidth=0.6,
                           zorder=3)
            if r["nonvacuity"]:  # outside the theorem's domain on purpose: shown to exceed 1
                ax.scatter([x], [y], marker="^", s=18, facecolor="none", edgecolor=colour, linewidth=0.8, zorder=4)
                continue
            ax.scatter([x], [y], marker=marker, s=26 if marker == "*" else 12, color=colour,
                       edgecolor="black" if failed else colour, linewidth=1.4 if failed else 0.5, alpha=0.9,
                       zorder=4)
        ax.axhline(1.0, color="k", lw=0.8, zorder=1)
        ax.set_yscale("log")
        ax.set_ylim(bottom, AXIS_TOP)
        ax.set_xticks(range(len(ids)))
        ax.set_xticklabels(ids, fontsize=7)
        ax.set_xlim(-0.6, len(ids) - 0.4)
        for j in range(len(ids) - 1):
            ax.axvline(j + 0.5, color="0.85", lw=0.4, zorder=0)
        ax.set_ylabel("measured / bound")
        ax.grid(alpha=0.3, which="major", axis="y", lw=0.3)
        for col in INSTANCE_COLUMNS:
            _, marker, colour = COLUMN_STYLE[col]
            ax.scatter([], [], marker=marker, s=16, color=colour, label=f"{col} instances: worst")
        ax.scatter([], [], marker="o", s=10, facecolor="none", edgecolor="0.3", label="typical (geometric mean)")
        ax.scatter([], [], marker="^", s=18, facecolor="none", edgecolor=COLUMN_STYLE["witness"][2],
                   label=f"non-vacuity witness (outside the domain: > {NONVACUITY_RATIO:g})")
        ax.legend(fontsize=6, loc="lower left", ncol=2)
        n_fail = sum(r["verdict"] not in ("PASS", "NO POWER") for r in data["rows"])
        n_unstated = sum(r["instances"] == "unstated" for r in data["rows"])
        ax.set_title(f"Tightness of {len(data['rows'])} independent tallies per theorem and instance kind "
                     f"({n_fail} failing, outlined black"
                     + (f"; {n_unstated} of unstated kind, grey" if n_unstated else "") + ")")
        return style.save(fig, Path(path))


register_figure(NAME, title=TITLE, data=data, draw=draw)
