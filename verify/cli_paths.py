"""Output paths checked before any work: every CLI calls these on its output options first.

An unwritable path found after minutes of checks or training loses the work; found first, it is one line naming
the option, exit status 2 (argparse's usage-error status). Nothing is left behind by the probe: a folder that
did not exist is created (the command would create it anyway), a file that did not exist is not.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path


def writable_dir(path, option: str) -> Path:
    """``path`` as a folder the command can write into (created if missing); ValueError naming ``option``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-probe-"):
            pass
    except OSError as exc:
        raise ValueError(f"{option} {path} is not writable ({exc.strerror or exc})") from exc
    return path


def writable_file(path, option: str) -> Path:
    """``path`` as a file the command can write (its folder created if missing); ValueError naming ``option``."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder; give a file path")
    writable_dir(path.parent if str(path.parent) else Path("."), f"{option} folder")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{option} {path} is not writable (permission denied)")
    return path


def fail(ap: argparse.ArgumentParser, message: str) -> None:
    """One line on stderr, ``prog: error: message``, exit status 2 (no usage block, no traceback)."""
    ap.exit(2, f"{ap.prog}: error: {' '.join(str(message).split())}\n")
