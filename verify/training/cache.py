"""Committed results of training runs, keyed by everything that determines them, so figures re-render in seconds.

What it is for: the figures that train many models (K7 at depth, the divergence atlas) take minutes; their
per-run results (numbers only — never weights) are stored as JSON under ``figures/runs/`` and committed. A run is
looked up by a key that hashes its full configuration together with what else decides its outcome — the corpus
(SHA-256), the torch version and ``TRAINING_VERSION`` (bumped whenever the training or measurement code changes
what a run produces). A different Python (hence a different embedded corpus), torch or configuration misses the
cache and trains; ``python -m verify.figures --retrain`` ignores it altogether.

What it is not: a model store. Weights are not kept (they are tens of MB); what a figure needs from a trained
model is measured in the same process that trained it and stored with the run.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

# Bump when train_batched, the models or the per-run measurements change what a cached run would contain.
TRAINING_VERSION = 1
ROOT = Path(__file__).resolve().parents[2]
RUNS_DIR = ROOT / "figures" / "runs"


def run_key(config: dict, corpus_sha256: str) -> str:
    """A stable key of a run: SHA-256 (first 20 hex digits) of its canonical JSON and what decides its outcome."""
    import torch

    blob = json.dumps({"config": config, "corpus": corpus_sha256, "torch": torch.__version__.split("+")[0],
                       "training_version": TRAINING_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


class RunCache:
    """Runs of one experiment family in one JSON file ``<dir>/<name>.json``: {key: record}."""

    def __init__(self, name: str, directory: Path | str | None = None, enabled: bool = True):
        if not name or not all(c.isalnum() or c in "_-" for c in name):
            raise ValueError(f"name must be letters, digits, '_' or '-', got {name!r}")
        self.path = Path(directory or RUNS_DIR) / f"{name}.json"
        self.enabled = enabled
        self.records: dict[str, dict] = {}
        if enabled and self.path.exists():
            try:
                self.records = json.loads(self.path.read_text())
            except json.JSONDecodeError as exc:
                raise ValueError(f"cache file {self.path} is not valid JSON ({exc}); delete it or pass --retrain") from exc
        self.hits = self.misses = 0

    def get(self, key: str) -> dict | None:
        rec = self.records.get(key) if self.enabled else None
        if rec is None:
            self.misses += 1
        else:
            self.hits += 1
        return rec

    def put(self, key: str, record: dict) -> None:
        self.records[key] = record

    def save(self, keep: Sequence[str] | None = None) -> None:
        """Write the file (atomically); with ``keep``, only those keys (drop runs no figure uses any more)."""
        recs = self.records if keep is None else {k: self.records[k] for k in keep if k in self.records}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(recs, indent=0, sort_keys=True, ensure_ascii=False))
        os.replace(tmp, self.path)

    def fetch(self, keyed_configs: Sequence[tuple[str, dict]], compute: Callable[[list[dict]], list[dict]]) -> list[dict]:
        """Records for every (key, config): cached ones as they are, the missing ones from one ``compute`` call
        (which receives the missing configs in order and returns one record each); saves when anything was new."""
        missing = [(k, c) for k, c in keyed_configs if self.get(k) is None]
        if missing:
            new = compute([c for _, c in missing])
            if len(new) != len(missing):
                raise ValueError(f"compute returned {len(new)} records for {len(missing)} configs")
            for (k, _), rec in zip(missing, new):
                self.put(k, rec)
        out = [self.records[k] for k, _ in keyed_configs]
        if missing:
            self.save()
        return out
