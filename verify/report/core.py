"""The claim ledger a reviewer reads: one self-contained HTML page, plus the same as Markdown and JSON.

    python -m verify.report [--from figures/verification.json] [--level quick|full] [--out figures]

Without ``--from`` it runs every registered check first (as ``python -m verify`` does). Two tables:

- **Paper claims K1–K8**, each decided by its own test of the claim (``verify.report.claims``) as *reproduced*,
  *partly*, *not reproduced* or *not tested*, with the parts that decide it, their numbers and the scale at
  which they were tested, and the catalogue ids it rests on.
- **Catalogue**: every id with statement, provenance, functions and tests, cases, worst error against
  tolerance, tightness per kind of instance (witness / random / trained: worst and typical measured/bound), and
  its evidence. Only independent checks count as verification (``verify.checks.record``): an id whose passing
  tallies are all code identities, calibrated allowances or bands without power reads NOT INDEPENDENT, not PASS;
  band comparisons whose half-width exceeds the predicted effect are listed as having no power.

Seeds, package versions and device are recorded; figures are embedded (base64 PNG) so the page opens anywhere.
"""
from __future__ import annotations

import argparse
import base64
import html
import json
import math
import time
from pathlib import Path

from verify.checks.record import EVIDENCE_CLASSES, TIGHTNESS_COLUMNS, tightness_column
from verify.report import claims as claim_tests
from verify.report.ledger import CATALOGUE, CLAIMS

ROOT = Path(__file__).resolve().parents[2]
ID_VERDICTS = ("PASS", "NOT INDEPENDENT", "FAIL", "NOT VERIFIED")
CLAIM_VERDICTS = claim_tests.VERDICTS
VERDICT_COLOURS = {"PASS": "#1a7f37", "FAIL": "#cf222e", "NOT VERIFIED": "#9a6700", "NOT INDEPENDENT": "#6e7781",
                   "NO POWER": "#6e7781", "NOT RUN": "#9a6700",
                   "reproduced": "#1a7f37", "partly": "#9a6700", "not reproduced": "#cf222e", "not tested": "#6e7781",
                   "undecided": "#6e7781"}
NONVACUITY_RATIO = 1.1  # witnesses above this are outside their theorem's domain on purpose (verify.figures.tightness)


def _f(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def evidence_summary(checks: list[dict]) -> dict:
    """Per evidence class: tallies and comparisons; the tallies that verify; the band comparisons without power."""
    out = {e: {"tallies": 0, "comparisons": 0} for e in EVIDENCE_CLASSES}
    verifying, no_power = [], []
    for c in checks:
        cls = out.setdefault(c.get("evidence", "independent"), {"tallies": 0, "comparisons": 0})
        cls["tallies"] += 1
        cls["comparisons"] += int(c.get("comparisons", 0))
        if c.get("verifies", c.get("verdict") == "PASS" and c.get("evidence", "independent") == "independent"):
            verifying.append(c["check"])
        if c.get("no_power"):
            no_power.append({"check": c["check"], "no_power": int(c["no_power"]),
                             "comparisons": int(c.get("comparisons", 0)),
                             "max_halfwidth_over_effect": _f(c.get("max_relative_halfwidth"))})
    return {"classes": out, "verifying": verifying, "no_power": no_power}


def tightness_by_instances(checks: list[dict]) -> dict:
    """Per instance kind: the largest worst-ratio and the smallest typical ratio of its tightness tallies."""
    out = {}
    for c in checks:
        col = tightness_column(c)
        if col is None:
            continue
        worst, typical = _f(c.get("worst_ratio")), _f(c.get("typical_ratio"))
        if c.get("kind") == "witness" and worst > NONVACUITY_RATIO:
            continue
        s = out.setdefault(col, {"worst": None, "typical": None, "tallies": 0})
        s["tallies"] += 1
        if math.isfinite(worst):
            s["worst"] = worst if s["worst"] is None else max(s["worst"], worst)
        if math.isfinite(typical) and typical > 0:
            s["typical"] = typical if s["typical"] is None else min(s["typical"], typical)
    return out


def catalogue_entry(tid: str, r: dict | None) -> dict:
    if r is None:
        return {"id": tid, "verdict": "NOT VERIFIED", "why": "no check was registered or run for this id in this build",
                "evidence": evidence_summary([]), "tightness_by_instances": {}}
    e = dict(r)
    checks = r.get("checks", [])
    # published-vs-measured notes a check records (e.g. where a neighbour paper's statement needs refining)
    e["findings"] = [c["numbers"]["finding"] for c in checks if "finding" in c.get("numbers", {})]
    e["worst_error"] = _max([c.get("worst_error") for c in checks])
    e["tightness"] = _max([c.get("worst_ratio") for c in checks if tightness_column(c)
                           and not (c.get("kind") == "witness" and _f(c.get("worst_ratio")) > NONVACUITY_RATIO)])
    e["tightness_by_instances"] = tightness_by_instances(checks)
    e["evidence"] = ev = evidence_summary(checks)
    failed = [c for c in checks if c.get("verdict") == "FAIL"]
    if r.get("error") or failed or r.get("verdict") == "FAIL":
        e["verdict"] = "FAIL"
        e["why"] = r.get("error") or "; ".join(
            f"{c['check']}: {c['failures']} of {c['comparisons']} comparisons out of tolerance" for c in failed)
    elif not checks:
        e["verdict"], e["why"] = "NOT VERIFIED", "the check ran no tallies"
    elif ev["verifying"]:
        e["verdict"] = "PASS"
    else:
        kinds = sorted({c.get("evidence", "independent") for c in checks} - {"independent"})
        e["verdict"] = "NOT INDEPENDENT"
        e["why"] = ("passes, but no independent check verifies it: only " + ", ".join(kinds or ["bands without power"])
                    + " evidence")
    if ev["no_power"]:
        n = sum(x["no_power"] for x in ev["no_power"])
        of = sum(x["comparisons"] for x in ev["no_power"])
        worst = max(x["max_halfwidth_over_effect"] for x in ev["no_power"])
        e.setdefault("notes", []).append(
            f"{n} of {of} band comparisons have no power (half-width up to {worst:.3g}× the predicted effect): "
            "not counted as passing")
    return e


def _claim_entry(c: dict, by_id: dict, figs: dict, figures_dir: Path, verdict_of: dict) -> dict:
    result = claim_tests.evaluate(c["id"], by_id, figs)
    figs_present = [f for f in c["figures"] if (figures_dir / f"{f}.png").exists()]
    rests_on = {i: verdict_of.get(i, "NOT VERIFIED") for i in c["ids"]}
    return {**c, **result, "why": result["reason"] if result["verdict"] != "reproduced" else "",
            "rests_on": rests_on, "figures_present": figs_present,
            "figures_missing": [f for f in c["figures"] if f not in figs_present]}


def build_ledger(results: dict, figures_dir: Path) -> dict:
    """Combine check records, figure data and the claim map into the ledger (a JSON-able dict)."""
    figures_dir = Path(figures_dir)
    by_id = {r["id"]: r for r in results["theorems"]}
    entries = [catalogue_entry(tid, by_id.get(tid)) for tid in CATALOGUE + tuple(i for i in by_id if i not in CATALOGUE)]
    _cross_findings(entries, by_id)
    verdict_of = {e["id"]: e["verdict"] for e in entries}
    figs = claim_tests.load_figures(figures_dir)
    claims = [_claim_entry(c, by_id, figs, figures_dir, verdict_of) for c in CLAIMS]
    counts = {v: sum(e["verdict"] == v for e in entries) for v in ID_VERDICTS}
    claim_counts = {v: sum(c["verdict"] == v for c in claims) for v in CLAIM_VERDICTS}
    return {"generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "level": results.get("level"),
            "seed": results.get("seed"), "environment": results.get("environment", {}), "counts": counts,
            "claim_counts": claim_counts, "claims": claims, "catalogue": entries,
            "figure_data": {k: v is not None for k, v in figs.items()}}


def _cross_findings(entries: list[dict], by_id: dict) -> None:
    """Where one id's bound is tighter than another's on the same instances, both entries say so (F7 vs F6)."""
    comparison = claim_tests._f7_comparison(by_id)
    if not comparison:
        return
    f6 = [c["F6_tightness"] for c in comparison]
    f7 = [c["F7_D_tightness"] for c in comparison]
    f7j = [c["F7_J_tightness"] for c in comparison]
    tighter = all(a > b for a, b in zip(f7j, f6))
    text = (f"on the same stationary models F7's depth-free bound is {'tighter' if tighter else 'not tighter'} than "
            f"F6's envelope: F7 D/λ {min(f7):.3g}–{max(f7):.3g}, F7 J(θ)/λ {min(f7j):.3g}–{max(f7j):.3g}, "
            f"F6 {min(f6):.3g}–{max(f6):.3g} (measured/bound)")
    for e in entries:
        if e["id"] == "F6":
            e.setdefault("findings", []).append(text)


def _max(values):
    nums = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return max(nums) if nums else None


def _num(v) -> str:
    return "–" if v is None else (f"{v:.3g}" if isinstance(v, (int, float)) else str(v))


def _badge(verdict: str) -> str:
    return (f'<span class="badge" style="background:{VERDICT_COLOURS.get(verdict, "#555")}">'
            f"{html.escape(verdict)}</span>")


def _tight_text(t: dict) -> str:
    parts = []
    for col in (*TIGHTNESS_COLUMNS, "unstated"):
        if col in t:
            parts.append(f"{col} {_num(t[col]['worst'])}" + (f" (typ. {_num(t[col]['typical'])})"
                                                              if t[col]["typical"] is not None else ""))
    return "; ".join(parts) or "–"


def _evidence_text(ev: dict) -> str:
    cls = ev["classes"]
    parts = [f"{k} {v['tallies']}" for k, v in cls.items() if v["tallies"]]
    text = ", ".join(parts) or "–"
    if ev["no_power"]:
        text += f"; no power {sum(x['no_power'] for x in ev['no_power'])}/" \
                f"{sum(x['comparisons'] for x in ev['no_power'])}"
    return text


def _brief(numbers, limit: int = 240) -> str:
    """A one-line rendering of a part's numbers (floats to 3 digits), cut at ``limit`` characters."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k}: {fmt(x)}" for k, x in v.items()) + "}"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(fmt(x) for x in v[:6]) + (", …" if len(v) > 6 else "") + "]"
        return str(v)
    text = fmt(numbers)
    return text if len(text) <= limit else text[:limit] + "…"


def render_markdown(ledger: dict) -> str:
    lines = ["# Claim ledger", "",
             f"Level {ledger['level']}, seed {ledger['seed']}, generated {ledger['generated']}. Claims: "
             + ", ".join(f"{k}: {v}" for k, v in ledger["claim_counts"].items()) + ". Catalogue: "
             + ", ".join(f"{k}: {v}" for k, v in ledger["counts"].items()) + ".", "",
             "Only independent checks count as verification; code identities, calibrated allowances and bands without "
             "power are shown as such. Tightness is measured/bound per kind of instance (worst, typical).", "",
             "## Paper claims", "", "| claim | verdict | our statement | parts (verdict: reason) | scale | rests on |",
             "|---|---|---|---|---|---|"]
    for c in ledger["claims"]:
        parts = "<br>".join(f"{'**' if p['core'] else ''}{p['name']}{'**' if p['core'] else ''}: *{p['verdict']}* "
                            f"({p['reason']})" for p in c["parts"])
        rests = ", ".join(f"{i} {v}" for i, v in c["rests_on"].items())
        lines.append(f"| {c['id']} | **{c['verdict']}** | {c['ours']} | {parts} | {c.get('scale', '')} | {rests} |")
    lines += ["", "## Catalogue", "",
              "| id | title | provenance | cases | evidence (tallies) | worst err/tol | tightness per instance kind | "
              "verdict | notes |", "|---|---|---|---|---|---|---|---|---|"]
    for e in ledger["catalogue"]:
        notes = "; ".join([e.get("why", "")] + e.get("notes", []) + e.get("findings", [])).strip("; ")
        lines.append(f"| {e['id']} | {e.get('title', '')} | {e.get('provenance', '')} | {e.get('cases', 0)} | "
                     f"{_evidence_text(e['evidence'])} | {_num(e.get('worst_error'))} | "
                     f"{_tight_text(e.get('tightness_by_instances', {}))} | **{e['verdict']}** | {notes} |")
    env = ledger["environment"]
    lines += ["", "## Environment", ""] + [f"- {k}: {v}" for k, v in env.items()]
    return "\n".join(lines) + "\n"


def render_html(ledger: dict, figures_dir: Path) -> str:
    esc = html.escape
    counts = " ".join(f"{_badge(k)} {v}" for k, v in ledger["claim_counts"].items())
    id_counts = " ".join(f"{_badge(k)} {v}" for k, v in ledger["counts"].items())
    claim_rows = []
    for c in ledger["claims"]:
        parts = "".join(
            f"<li class='{'core' if p['core'] else 'aux'}'>{_badge(p['verdict'])} {esc(p['name'])}: "
            f"{esc(p['reason'])}" + (f"<br><span class='tol'>{esc(_brief(p['numbers']))}</span>" if p["numbers"] else "")
            + (f"<br><span class='scale'>scale: {esc(p['scale'])}</span>" if p.get("scale") else "") + "</li>"
            for p in c["parts"])
        rests = ", ".join(f"<a href='#{i}'>{i}</a> {_badge(v)}" for i, v in c["rests_on"].items())
        claim_rows.append(
            f"<tr id='{c['id']}'><td><b>{c['id']}</b></td><td>{_badge(c['verdict'])}</td>"
            f"<td><i>paper:</i> {esc(c['paper'])}<br><i>ours:</i> {esc(c['ours'])}"
            + (f"<br><span class='why'>{esc(c['why'])}</span>" if c["why"] else "")
            + f"<ul class='parts'>{parts}</ul></td><td>{rests}</td><td>"
            + ", ".join(f"<a href='#fig-{f}'>{f}</a>" for f in c["figures_present"])
            + "".join(f" <span class='why'>({esc(f)} not generated)</span>" for f in c["figures_missing"])
            + "</td></tr>")
    rows = []
    for e in ledger["catalogue"]:
        checks = "".join(
            f"<li>{esc(ch['check'])} <span class='ev ev-{esc(ch.get('evidence', 'independent'))}'>"
            f"{esc(ch.get('evidence', 'independent'))}</span> <span class='inst'>{esc(ch.get('instances', '') or '–')}"
            f"</span>: {ch['cases']} cases, err/tol {_num(ch['worst_error'])}, tight {_num(ch['worst_ratio'])}"
            + (f", no power {ch['no_power']}/{ch['comparisons']}" if ch.get("no_power") else "")
            + f" {_badge(ch['verdict'])}"
            + (f" <span class='tol'>{esc(ch['tolerance'])}</span>" if ch.get("tolerance") else "") + "</li>"
            for ch in e.get("checks", []))
        refs = "<br>".join(esc(x) for x in list(e.get("theory", [])) + list(e.get("tests", [])))
        notes = e.get("notes", [])
        rows.append(
            f"<tr id='{e['id']}'><td><b>{e['id']}</b></td><td><b>{esc(e.get('title', ''))}</b><br>"
            f"{esc(e.get('statement', ''))}<br><i>{esc(e.get('provenance', ''))}</i>"
            + (f"<br><span class='why'>{esc(e['why'])}</span>" if e.get("why") else "")
            + "".join(f"<br><span class='why'>{esc(n)}</span>" for n in notes)
            + "".join(f"<br><span class='finding'>finding: {esc(f)}</span>" for f in e.get("findings", []))
            + f"<details><summary>checks</summary><ul>{checks}</ul></details></td>"
            f"<td class='refs'>{refs}</td><td>{e.get('cases', 0)}</td><td>{esc(_evidence_text(e['evidence']))}</td>"
            f"<td>{_num(e.get('worst_error'))}</td><td>{esc(_tight_text(e.get('tightness_by_instances', {})))}</td>"
            f"<td>{_badge(e['verdict'])}</td></tr>")
    figs = []
    for png in sorted(figures_dir.glob("*.png")):
        data = base64.b64encode(png.read_bytes()).decode()
        figs.append(f"<figure id='fig-{png.stem}'><img alt='{esc(png.stem)}' src='data:image/png;base64,{data}'>"
                    f"<figcaption>{esc(png.stem)}</figcaption></figure>")
    env = "".join(f"<li>{esc(str(k))}: {esc(str(v))}</li>" for k, v in ledger["environment"].items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Claim ledger — LN-placement stability</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:1300px;color:#1f2328}}
table{{border-collapse:collapse;width:100%;margin-bottom:2em}} td,th{{border:1px solid #d0d7de;padding:.4em;vertical-align:top}}
th{{background:#f6f8fa}} .badge{{color:#fff;padding:.1em .5em;border-radius:1em;font-size:.85em;white-space:nowrap}}
.why{{color:#9a6700}} .finding{{color:#0550ae}} .tol{{color:#57606a;font-size:.85em}} .refs{{font-family:monospace;font-size:.8em}}
.scale{{color:#57606a;font-size:.85em;font-style:italic}} ul.parts{{margin:.3em 0;padding-left:1.2em}} li.aux{{color:#57606a}}
.ev{{font-size:.8em;padding:0 .3em;border:1px solid #d0d7de;border-radius:.3em}} .ev-code-identity,.ev-calibrated{{background:#f6f8fa;color:#6e7781}}
.inst{{font-size:.8em;color:#57606a}}
figure{{display:inline-block;margin:1em;max-width:620px}} img{{max-width:100%}}
</style></head><body>
<h1>Claim ledger: Transformer stability under LayerNorm placement</h1>
<p id="summary">Level <b>{esc(str(ledger['level']))}</b>, seed {esc(str(ledger['seed']))}, generated
{esc(ledger['generated'])}. Claims: {counts}. Catalogue: {id_counts}</p>
<p>Source: arXiv 2510.09904. Its full text is not available; every statement below is the project's own
(docs/theorems.md) and says so in its provenance. A claim is decided by its own test on the suite's data (core
parts in black); only independent checks count as verification — code identities, calibrated allowances and bands
without power are shown as such. Tightness is measured/bound per kind of instance: worst (closest to the bound)
and typical (geometric mean).</p>
<h2>Paper claims</h2>
<table id="claims"><tr><th>claim</th><th>verdict</th><th>statement and the test of the claim</th><th>rests on</th>
<th>figures</th></tr>{''.join(claim_rows)}</table>
<h2>Catalogue</h2>
<table id="catalogue"><tr><th>id</th><th>statement</th><th>functions and tests</th><th>cases</th><th>evidence</th>
<th>worst err/tol</th><th>tightness (witness / random / trained)</th><th>verdict</th></tr>{''.join(rows)}</table>
<h2>Figures</h2>{''.join(figs) or '<p>No figures generated yet: run python -m verify.figures.</p>'}
<h2>Environment</h2><ul>{env}</ul>
</body></html>
"""


def write_report(results: dict, out: Path, figures_dir: Path) -> dict[str, Path]:
    ledger = build_ledger(results, figures_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"html": out / "report.html", "md": out / "report.md", "json": out / "report.json"}
    paths["html"].write_text(render_html(ledger, figures_dir))
    paths["md"].write_text(render_markdown(ledger))
    paths["json"].write_text(json.dumps(ledger, indent=1, ensure_ascii=False))
    return paths


def _load_records(ap, source: Path) -> dict:
    """Records written by ``python -m verify --json``, or a one-line error saying what is wrong with the file."""
    if not source.is_file():
        ap.error(f"--from: {source} does not exist or is not a file")
    try:
        results = json.loads(source.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        ap.error(f"--from: {source} is not JSON records from python -m verify --json ({exc})")
    if not isinstance(results, dict) or not isinstance(results.get("theorems"), list) or not all(
            isinstance(r, dict) and {"id", "verdict", "checks"} <= set(r) for r in results["theorems"]):
        ap.error(f"--from: {source} is not records from python -m verify --json (expected an object with a "
                 f"'theorems' list of records with id, verdict and checks)")
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m verify.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="source", type=Path, default=None,
                    help="records written by `python -m verify --json`; without it the checks are run now")
    ap.add_argument("--level", choices=("quick", "full"), default="quick")
    ap.add_argument("--seed", type=int, default=20251010)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=ROOT / "figures")
    ap.add_argument("--figures", type=Path, default=ROOT / "figures")
    args = ap.parse_args(argv)
    from verify.cli_paths import fail, writable_dir

    try:  # before the checks run
        writable_dir(args.out, "--out")
    except ValueError as exc:
        fail(ap, str(exc))
    if args.source is not None:
        results = _load_records(ap, args.source)
    else:
        from verify.checks.registry import Context, run_checks
        from verify.engine.strategies import load_profile_from_env

        load_profile_from_env()
        try:
            ctx = Context(level=args.level, seed=args.seed, device=args.device)
        except ValueError as exc:
            ap.error(str(exc))
        results = run_checks(ctx)
    try:
        paths = write_report(results, args.out, args.figures)
    except OSError as exc:
        ap.error(f"--out {args.out}: cannot write the report ({exc.strerror or exc})")
    ledger = json.loads(paths["json"].read_text())
    print("claims: " + "  ".join(f"{c['id']}={c['verdict']}" for c in ledger["claims"]))
    print(f"report: open {paths['html'].resolve()} (also {paths['md'].name}, {paths['json'].name})")
    return 0 if ledger["counts"]["FAIL"] == 0 else 1

