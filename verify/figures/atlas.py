"""The divergence atlas: per placement and depth, which (Δt, lr) trained, and S4's predicted boundary over it.

Data: ``verify.atlas.build_data`` (runs cached under ``figures/runs/atlas*.json``, so this re-renders in seconds;
``--retrain`` trains again; ``--fast`` is the test-size grid). Drawing: one panel per (depth, placement), Δt on
the x axis and the learning rate on the y axis (both log); a filled dot is a (Δt, lr) at which every seed trained,
a cross one at which every seed diverged (NaN/inf, or the final loss not below the initial one), an open triangle
one where the seeds disagree; an open circle one at which no seed diverged but not every seed learned context
(validation loss below the unigram cross-entropy by 0.1 nats, ``analysis.trainability``); the dashed line is S4's predicted largest stable
learning rate lr*(Δt) of the primary S4 variant, its constant fitted on the fit half of the grid; the dotted red
line that of the growth-aware criterion (lr·s(lr)^{2κ} ≤ c, docs/theorems/atlas.md), fitted on the same half; the
dash-dotted blue line that of S4 overflow (lr ≤ c, and the stack at the grown Δt inside float32's range).
"""
from __future__ import annotations

from pathlib import Path

from verify.figures import register_figure, style


def data(preset: str = "cpu", fast: bool = False, seed: int = 0, retrain: bool = False,
         workers: int | None = None) -> dict:
    from verify.atlas import build_data

    return build_data("test" if fast else preset, retrain=retrain, workers=workers)


def _lr_label(v: float) -> str:
    """2^k for powers of two (the atlas's grids), else the number."""
    import math

    k = math.log2(v)
    return f"$2^{{{int(round(k))}}}$" if abs(k - round(k)) < 1e-9 else f"{v:g}"


def draw(data: dict, path: Path) -> list[Path]:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    from verify.atlas.analysis import learned

    runs = data["runs"]
    tr = data.get("trainability") or {}
    h_uni, margin = tr.get("h_uni"), tr.get("margin", 0.0)
    placements = list(dict.fromkeys(r["config"]["placement"] for r in runs))
    depths = sorted({r["config"]["depth"] for r in runs})
    with style.figure_style():
        fig, axes = plt.subplots(len(depths), len(placements), squeeze=False, sharex=True, sharey=True,
                                 figsize=(style.DOUBLE, 0.9 + 1.05 * len(depths)))
        for i, L in enumerate(depths):
            for j, p in enumerate(placements):
                ax = axes[i][j]
                rs = [r for r in runs if r["config"]["placement"] == p and r["config"]["depth"] == L]
                pts: dict[tuple, list[bool]] = {}
                learnt: dict[tuple, list[bool]] = {}
                for r in rs:
                    k = (r["config"]["dt"], r["config"]["lr"])
                    pts.setdefault(k, []).append(bool(r["diverged"]))
                    learnt.setdefault(k, []).append(h_uni is not None and learned(r, h_uni, margin))
                ok = [k for k, v in pts.items() if not any(v) and all(learnt[k])]
                flat = [k for k, v in pts.items() if not any(v) and not all(learnt[k])]
                bad = [k for k, v in pts.items() if all(v)]
                mixed = [k for k, v in pts.items() if any(v) and not all(v)]
                ax.scatter([k[0] for k in ok], [k[1] for k in ok], s=9, color=style.color(p),
                           label="trained, learned context" if h_uni is not None else "trained")
                if flat:
                    ax.scatter([k[0] for k in flat], [k[1] for k in flat], s=9, facecolors="none",
                               edgecolors=style.color(p), linewidths=0.6, label="trained, not below unigram")
                ax.scatter([k[0] for k in bad], [k[1] for k in bad], s=12, marker="x", color="#000000",
                           linewidths=0.7, label="diverged")
                if mixed:
                    ax.scatter([k[0] for k in mixed], [k[1] for k in mixed], s=12, marker="^", facecolors="none",
                               edgecolors="#000000", linewidths=0.6, label="seeds disagree")
                ml = data["model"]["max_lr"][p][str(L)]
                dts = sorted(float(k) for k in ml)
                pred = [ml[f"{dt:g}"] for dt in dts]
                ax.plot(dts, pred, color="#444444", **style.THEORY, label="S4 predicted max lr")
                ol = data.get("model", {}).get("overflow", {}).get("max_lr", {}).get(p, {}).get(str(L))
                if ol:
                    ax.plot(dts, [ol[f"{dt:g}"] for dt in dts], color="#1f77b4", linestyle="-.", linewidth=0.9,
                            label="S4 overflow max lr")
                gl = data.get("growth_max_lr", {}).get(p, {}).get(str(L))
                if gl:
                    ax.plot(dts, [gl[f"{dt:g}"] for dt in dts], color="#c0392b", **style.THEORY_ALT,
                            label="growth-aware max lr")
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.set_xticks(dts, [f"{v:g}" for v in dts])
                ax.xaxis.set_minor_locator(NullLocator())
                lrs = sorted({r["config"]["lr"] for r in runs})
                yt = lrs[::3] if len(lrs) > 3 else lrs
                ax.set_yticks(yt, [_lr_label(v) for v in yt])
                ax.yaxis.set_minor_locator(NullLocator())
                if i == 0:
                    ax.set_title(p, fontsize=7)
                if j == 0:
                    ax.set_ylabel(f"L={L}: lr", fontsize=6)
                if i == len(depths) - 1:
                    ax.set_xlabel("Δt", fontsize=6)
                ax.tick_params(labelsize=5)
        handles, labels = {}, {}
        for row in axes:
            for ax in row:
                for h, lab in zip(*ax.get_legend_handles_labels()):
                    handles.setdefault(lab, h)
        fig.legend(list(handles.values()), list(handles), fontsize=5, loc="lower center", ncol=len(handles),
                   frameon=False)
        extra = (f"; growth-aware {data['growth_held_out_accuracy']:.0%}, AUC {data['growth_held_out_auc']:.2f}"
                 if "growth_held_out_accuracy" in data else "")
        if data.get("overflow"):
            fresh = (data.get("external") or {}).get("accuracy", {}).get("growth_overflow")
            extra += f"; overflow {data['overflow']['held_out_accuracy']:.0%}" + (
                f" (fresh seeds {fresh:.0%})" if fresh is not None else "")
        fig.suptitle(f"divergence atlas: S4 held-out accuracy {data['held_out_accuracy']:.0%}, "
                     f"AUC {data['held_out_auc']:.2f} ({data['primary']}){extra}", fontsize=7)
        fig.tight_layout(rect=(0, 0.04, 1, 1))
        return style.save(fig, path)


register_figure("atlas", title="Divergence atlas: trained vs diverged over (Δt, lr) per placement and depth, "
                               "with S4's predicted boundary", data=data, draw=draw)
