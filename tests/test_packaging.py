"""The set-up a reviewer runs: the README's two commands and CI's script must agree, and install CPU torch only."""
from __future__ import annotations

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in quick.splitlines() if line.startswith("    ") and line.strip()]


def test_readme_has_two_self_sufficient_commands():
    """Two commands, each making the venv and installing before it runs anything."""
    cmds = _readme_commands()
    assert len(cmds) == 2, cmds
    for cmd in cmds:
        assert cmd.startswith("python3 -m venv .venv && .venv/bin/pip install"), cmd
        assert "-c constraints-cpu.txt" in cmd, "the quick start must pin the CPU torch build"


def test_ci_runs_the_readme_test_command_verbatim():
    test_cmd = [c for c in _readme_commands() if "pytest" in c]
    assert len(test_cmd) == 1
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd[0] in ci.splitlines()


def test_torch_pin_is_the_cpu_build_that_lies_on_disk():
    """An unpinned torch resolves to a multi-GB CUDA build; the constraints file must pin 2.13.0 exactly."""
    pins = [l for l in (ROOT / "constraints-cpu.txt").read_text().splitlines() if l and not l.startswith("#")]
    assert "torch==2.13.0" in pins
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_req = [d for d in deps if re.match(r"torch\b", d)]
    assert torch_req and all("2.13.0" not in d or ">=" in d for d in torch_req)


def test_theorems_doc_is_assembled_from_its_chapters():
    """docs/theorems.md is generated from docs/theorems/*.md; a stale copy would contradict its chapters."""
    from verify.docs import assemble

    assert (ROOT / "docs" / "theorems.md").read_text() == assemble(), "run python -m verify.docs"


def test_no_module_imports_the_main_job_back():
    """verify.report and the figures are libraries the main job calls; none may import verify.__main__ (a circle)."""
    import ast

    offenders = []
    for path in (ROOT / "verify").rglob("*.py"):
        if path.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if any(n and n.startswith("verify.__main__") for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders


def test_public_commands_keep_working():
    """The commands the README documents still resolve after the package was split into folders."""
    import subprocess
    import sys

    for mod in ("verify", "verify.check", "verify.report", "verify.bench", "verify.figures", "verify.docs"):
        r = subprocess.run([sys.executable, "-m", mod, "--help"], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 0 and "usage:" in r.stdout, (mod, r.stderr[-500:])
