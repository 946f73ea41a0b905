"""The claim ledger: verdicts roll up honestly, and the page renders in a real browser."""
from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from verify.checks.registry import Context, run_checks
from verify.report.core import build_ledger, main, write_report
from verify.report.ledger import CATALOGUE, CLAIMS


def _results(verdicts: dict[str, str]) -> dict:
    theorems = []
    for tid, v in verdicts.items():
        check = {"check": "c", "kind": "inequality", "cases": 3, "comparisons": 3, "failures": int(v == "FAIL"),
                 "worst_error": 0.5 if v == "PASS" else 2.0, "worst_ratio": 0.9, "verdict": v, "tolerance": "t"}
        theorems.append({"id": tid, "title": tid, "statement": "s", "provenance": "p", "theory": [], "tests": [],
                         "docs": "d", "verdict": v, "error": None, "seconds": 0.1, "cases": 3, "checks": [check]})
    return {"level": "quick", "seed": 1, "environment": {"device": "cpu"}, "theorems": theorems}


def test_claim_verdicts_roll_up_from_their_ids(tmp_path):
    """All ids pass → PASS; one failing id → FAIL naming it; an unregistered id → NOT VERIFIED, never PASS."""
    all_pass = {i: "PASS" for i in CATALOGUE}
    ledger = build_ledger(_results(all_pass), tmp_path)
    assert all(c["verdict"] == "PASS" for c in ledger["claims"])
    one_fail = dict(all_pass, F2="FAIL")
    ledger = build_ledger(_results(one_fail), tmp_path)
    k2 = next(c for c in ledger["claims"] if c["id"] == "K2")
    assert k2["verdict"] == "FAIL" and "F2" in k2["why"]
    missing = {i: v for i, v in all_pass.items() if i != "U1"}
    ledger = build_ledger(_results(missing), tmp_path)
    k6 = next(c for c in ledger["claims"] if c["id"] == "K6")
    assert k6["verdict"] == "NOT VERIFIED" and "U1" in k6["why"]
    u1 = next(e for e in ledger["catalogue"] if e["id"] == "U1")
    assert u1["verdict"] == "NOT VERIFIED" and u1["why"]
    assert ledger["counts"] == {"PASS": len(CATALOGUE) - 1, "FAIL": 0, "NOT VERIFIED": 1}


def test_every_claim_rests_on_catalogue_ids():
    ids = {i for c in CLAIMS for i in c["ids"]}
    assert ids <= set(CATALOGUE)
    assert [c["id"] for c in CLAIMS] == [f"K{i}" for i in range(1, 9)]


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.stack = set(), []

    def handle_starttag(self, tag, attrs):
        self.ids.update(v for k, v in attrs if k == "id")


@pytest.fixture(scope="module")
def real_report(tmp_path_factory):
    """A report from real checks of two ids (the rest are reported as not verified)."""
    out = tmp_path_factory.mktemp("report")
    results = run_checks(Context(level="quick"), only=["N1", "N3"], progress=lambda *_: None)
    return write_report(results, out, out), results


def test_report_files_are_consistent(real_report):
    paths, results = real_report
    ledger = json.loads(paths["json"].read_text())
    n1 = next(e for e in ledger["catalogue"] if e["id"] == "N1")
    assert n1["verdict"] == "PASS" and n1["cases"] > 0 and n1["tightness"] is not None
    assert ledger["environment"]["torch"] and ledger["seed"] == results["seed"]
    md = paths["md"].read_text()
    assert "| N1 |" in md and "NOT VERIFIED" in md
    parser = _Collect()
    parser.feed(paths["html"].read_text())
    assert {"summary", "claims", "catalogue", "K1", "K8", "N1", "X6"} <= parser.ids


def test_cli_from_json(tmp_path, capsys):
    src = tmp_path / "records.json"
    src.write_text(json.dumps(_results({"N1": "PASS"})))
    assert main(["--from", str(src), "--out", str(tmp_path), "--figures", str(tmp_path)]) == 0
    assert "report: open" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--from", str(tmp_path / "missing.json")])


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium (Debian package 'chromium') not installed")
def test_report_renders_in_headless_chromium(real_report, tmp_path):
    """Open the page in a real browser: the DOM it builds has the summary, both tables and a verdict badge."""
    paths, _ = real_report
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", paths["html"].resolve().as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    assert 'id="summary"' in dom and 'id="claims"' in dom and 'id="catalogue"' in dom
    assert "PASS</span>" in dom and "NOT VERIFIED</span>" in dom
