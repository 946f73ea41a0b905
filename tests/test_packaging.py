"""The set-up a reviewer runs: the README's two commands and CI's script must agree, and install CPU torch only."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

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
