"""The claim ledger a reviewer reads: one self-contained HTML page, plus the same as Markdown and JSON.

    python -m verify.report [--from figures/verification.json] [--level quick|full] [--out figures]

Without ``--from`` it runs every registered check first (as ``python -m verify`` does). The page lists every paper
claim K1–K8 and every catalogue id with statement, provenance, the functions and tests that check it, cases tried,
worst error against tolerance, tightness, verdict and the figures that show it, with seeds, package versions and
device. A claim or id the suite could not verify says so and why. Figures are embedded (base64 PNG) so the page
opens anywhere without its folder.
"""
from __future__ import annotations

import argparse
import base64
import html
import json
import time
from pathlib import Path

from verify.report.ledger import CATALOGUE, CLAIMS

ROOT = Path(__file__).resolve().parents[2]
VERDICT_COLOURS = {"PASS": "#1a7f37", "FAIL": "#cf222e", "NOT VERIFIED": "#9a6700"}


def build_ledger(results: dict, figures_dir: Path) -> dict:
    """Combine check results with the claim map into the ledger (a JSON-able dict)."""
    by_id = {r["id"]: r for r in results["theorems"]}
    entries = []
    for tid in CATALOGUE + tuple(i for i in by_id if i not in CATALOGUE):
        r = by_id.get(tid)
        if r is None:
            entries.append({"id": tid, "verdict": "NOT VERIFIED",
                            "why": "no check was registered or run for this id in this build"})
            continue
        e = dict(r)
        # published-vs-measured notes a check records (e.g. where a neighbour paper's statement needs refining)
        e["findings"] = [c["numbers"]["finding"] for c in r["checks"] if "finding" in c.get("numbers", {})]
        e["worst_error"] = _max([c.get("worst_error") for c in r["checks"]])
        e["tightness"] = _max([c.get("worst_ratio") for c in r["checks"] if c.get("kind") in ("inequality", "witness")])
        if r["verdict"] != "PASS":
            e["why"] = r.get("error") or "; ".join(
                f"{c['check']}: {c['failures']} of {c['comparisons']} comparisons out of tolerance"
                for c in r["checks"] if c["verdict"] != "PASS")
        entries.append(e)
    verdict_of = {e["id"]: e["verdict"] for e in entries}
    claims = []
    for c in CLAIMS:
        missing = [i for i in c["ids"] if verdict_of.get(i, "NOT VERIFIED") == "NOT VERIFIED"]
        failed = [i for i in c["ids"] if verdict_of.get(i) == "FAIL"]
        verdict = "FAIL" if failed else ("NOT VERIFIED" if missing else "PASS")
        why = (f"failing: {', '.join(failed)}" if failed else
               f"not verified: {', '.join(missing)}" if missing else "")
        figs = [f for f in c["figures"] if (figures_dir / f"{f}.png").exists()]
        claims.append({**c, "verdict": verdict, "why": why, "figures_present": figs,
                       "figures_missing": [f for f in c["figures"] if f not in figs]})
    counts = {v: sum(e["verdict"] == v for e in entries) for v in VERDICT_COLOURS}
    return {"generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "level": results.get("level"),
            "seed": results.get("seed"), "environment": results.get("environment", {}), "counts": counts,
            "claims": claims, "catalogue": entries}


def _max(values):
    nums = [v for v in values if isinstance(v, (int, float))]
    return max(nums) if nums else None


def _num(v) -> str:
    return "–" if v is None else (f"{v:.3g}" if isinstance(v, (int, float)) else str(v))


def _badge(verdict: str) -> str:
    return (f'<span class="badge" style="background:{VERDICT_COLOURS.get(verdict, "#555")}">'
            f"{html.escape(verdict)}</span>")


def render_markdown(ledger: dict) -> str:
    lines = ["# Claim ledger", "",
             f"Level {ledger['level']}, seed {ledger['seed']}, generated {ledger['generated']}. "
             + ", ".join(f"{k}: {v}" for k, v in ledger["counts"].items()), "",
             "## Paper claims", "", "| claim | verdict | our statement | rests on | why not |", "|---|---|---|---|---|"]
    for c in ledger["claims"]:
        lines.append(f"| {c['id']} | **{c['verdict']}** | {c['ours']} | {', '.join(c['ids'])} | {c['why']} |")
    lines += ["", "## Catalogue", "",
              "| id | title | provenance | cases | worst err/tol | tightness | verdict | notes |",
              "|---|---|---|---|---|---|---|---|"]
    for e in ledger["catalogue"]:
        lines.append(f"| {e['id']} | {e.get('title', '')} | {e.get('provenance', '')} | {e.get('cases', 0)} | "
                     f"{_num(e.get('worst_error'))} | {_num(e.get('tightness'))} | **{e['verdict']}** | "
                     f"{'; '.join([e.get('why', '')] + e.get('findings', [])).strip('; ')} |")
    env = ledger["environment"]
    lines += ["", "## Environment", ""] + [f"- {k}: {v}" for k, v in env.items()]
    return "\n".join(lines) + "\n"


def render_html(ledger: dict, figures_dir: Path) -> str:
    esc = html.escape
    counts = " ".join(f"{_badge(k)} {v}" for k, v in ledger["counts"].items())
    claim_rows = "".join(
        f"<tr id='{c['id']}'><td><b>{c['id']}</b></td><td>{_badge(c['verdict'])}</td>"
        f"<td><i>paper:</i> {esc(c['paper'])}<br><i>ours:</i> {esc(c['ours'])}"
        + (f"<br><span class='why'>{esc(c['why'])}</span>" if c["why"] else "")
        + "</td><td>" + ", ".join(f"<a href='#{i}'>{i}</a>" for i in c["ids"]) + "</td><td>"
        + ", ".join(f"<a href='#fig-{f}'>{f}</a>" for f in c["figures_present"])
        + "".join(f" <span class='why'>({esc(f)} not generated)</span>" for f in c["figures_missing"])
        + "</td></tr>"
        for c in ledger["claims"])
    rows = []
    for e in ledger["catalogue"]:
        checks = "".join(
            f"<li>{esc(ch['check'])}: {ch['cases']} cases, err/tol {_num(ch['worst_error'])}, "
            f"tight {_num(ch['worst_ratio'])} {_badge(ch['verdict'])}"
            + (f" <span class='tol'>{esc(ch['tolerance'])}</span>" if ch.get("tolerance") else "") + "</li>"
            for ch in e.get("checks", []))
        refs = "<br>".join(esc(x) for x in list(e.get("theory", [])) + list(e.get("tests", [])))
        rows.append(
            f"<tr id='{e['id']}'><td><b>{e['id']}</b></td><td><b>{esc(e.get('title', ''))}</b><br>"
            f"{esc(e.get('statement', ''))}<br><i>{esc(e.get('provenance', ''))}</i>"
            + (f"<br><span class='why'>{esc(e['why'])}</span>" if e.get("why") else "")
            + "".join(f"<br><span class='finding'>finding: {esc(f)}</span>" for f in e.get("findings", []))
            + f"<details><summary>checks</summary><ul>{checks}</ul></details></td>"
            f"<td class='refs'>{refs}</td><td>{e.get('cases', 0)}</td><td>{_num(e.get('worst_error'))}</td>"
            f"<td>{_num(e.get('tightness'))}</td><td>{_badge(e['verdict'])}</td></tr>")
    figs = []
    for png in sorted(figures_dir.glob("*.png")):
        data = base64.b64encode(png.read_bytes()).decode()
        figs.append(f"<figure id='fig-{png.stem}'><img alt='{esc(png.stem)}' src='data:image/png;base64,{data}'>"
                    f"<figcaption>{esc(png.stem)}</figcaption></figure>")
    env = "".join(f"<li>{esc(str(k))}: {esc(str(v))}</li>" for k, v in ledger["environment"].items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Claim ledger — LN-placement stability</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#1f2328}}
table{{border-collapse:collapse;width:100%;margin-bottom:2em}} td,th{{border:1px solid #d0d7de;padding:.4em;vertical-align:top}}
th{{background:#f6f8fa}} .badge{{color:#fff;padding:.1em .5em;border-radius:1em;font-size:.85em;white-space:nowrap}}
.why{{color:#9a6700}} .finding{{color:#0550ae}} .tol{{color:#57606a;font-size:.85em}} .refs{{font-family:monospace;font-size:.8em}}
figure{{display:inline-block;margin:1em;max-width:540px}} img{{max-width:100%}}
</style></head><body>
<h1>Claim ledger: Transformer stability under LayerNorm placement</h1>
<p id="summary">Level <b>{esc(str(ledger['level']))}</b>, seed {esc(str(ledger['seed']))}, generated
{esc(ledger['generated'])}. {counts}</p>
<p>Source: arXiv 2510.09904. Its full text is not available; every statement below is the project's own
(docs/theorems.md) and says so in its provenance.</p>
<h2>Paper claims</h2>
<table id="claims"><tr><th>claim</th><th>verdict</th><th>statement</th><th>rests on</th><th>figures</th></tr>{claim_rows}</table>
<h2>Catalogue</h2>
<table id="catalogue"><tr><th>id</th><th>statement</th><th>functions and tests</th><th>cases</th><th>worst err/tol</th>
<th>tightness</th><th>verdict</th></tr>{''.join(rows)}</table>
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

