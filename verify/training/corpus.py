"""Training text for the small GPTs: an embedded default that needs no download, or a file given with --data.

What it is for: a deterministic, byte-level (vocabulary 256) token stream, split into train and validation
parts, from which seeded batches of (input, target) windows are drawn. The default corpus is the Python
standard library's own ``.py`` sources (every Python installation ships them): files sorted by relative path,
concatenated with a one-line header each, and cut at ``max_bytes`` (2 MB). Its SHA-256 is recorded with every
figure's data, since a different Python version ships different sources.

``--data PATH`` takes either a text file (read as bytes, vocabulary 256) or a flat little-endian uint16 token
file as written by common GPT-2 training code (``*.bin``; vocabulary = max token + 1, at least 50257 when the
file looks like GPT-2 tokens).

What it is not: a tokenizer or a data pipeline; windows are drawn uniformly with replacement.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import sysconfig
from pathlib import Path

import numpy as np
import torch

DEFAULT_MAX_BYTES = 2_000_000
GPT2_VOCAB = 50257
# Directories of the standard library that are not "the standard library's source": third-party packages,
# the regression-test suite (large, with deliberately odd encodings) and IDLE's assets.
_EXCLUDED_DIRS = {"site-packages", "dist-packages", "test", "tests", "idlelib", "__pycache__", "turtledemo"}


@dataclasses.dataclass(frozen=True)
class Corpus:
    """A token stream with its train/validation split; ``tokens`` is a 1-D integer array."""

    tokens: np.ndarray
    vocab_size: int
    source: str
    sha256: str
    val_fraction: float = 0.1

    def __post_init__(self):
        if self.tokens.ndim != 1 or self.tokens.size < 16:
            raise ValueError(f"tokens must be a 1-D array of at least 16 tokens, got shape {self.tokens.shape}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")

    @property
    def n_train(self) -> int:
        return int(round(self.tokens.size * (1 - self.val_fraction)))

    def split(self, name: str) -> np.ndarray:
        """The train part (first 1 − val_fraction of the stream) or the validation part (the rest)."""
        if name == "train":
            return self.tokens[: self.n_train]
        if name == "val":
            return self.tokens[self.n_train:]
        raise ValueError(f"split must be 'train' or 'val', got {name!r}")

    def batch(self, split: str, batch_size: int, block: int, rng: np.random.Generator,
              device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """``batch_size`` random windows: inputs (B, block) and next-token targets (B, block), int64."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        data = self.split(split)
        if block < 1 or block + 1 > data.size:
            raise ValueError(f"block must be in [1, {data.size - 1}] for the {split} split, got {block!r}")
        starts = rng.integers(0, data.size - block, size=batch_size)
        idx = starts[:, None] + np.arange(block + 1)[None, :]
        win = torch.from_numpy(data[idx].astype(np.int64))
        return win[:, :-1].to(device), win[:, 1:].to(device)

    def describe(self) -> dict:
        return {"source": self.source, "sha256": self.sha256, "n_tokens": int(self.tokens.size),
                "vocab_size": self.vocab_size, "val_fraction": self.val_fraction}


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: Path | None = None) -> list[Path]:
    """The standard library's ``.py`` files, sorted by relative POSIX path (the corpus order)."""
    root = stdlib_dir() if root is None else Path(root)
    if not root.is_dir():
        raise ValueError(f"root must be a directory, got {str(root)!r}")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _EXCLUDED_DIRS)
        found.extend(Path(dirpath) / f for f in filenames if f.endswith(".py"))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def default_corpus_bytes(max_bytes: int = DEFAULT_MAX_BYTES, root: Path | None = None) -> bytes:
    """The embedded default: standard-library sources, each after a ``# file: <relpath>`` line, cut at max_bytes."""
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1024:
        raise ValueError(f"max_bytes must be an integer >= 1024, got {max_bytes!r}")
    root = stdlib_dir() if root is None else Path(root)
    parts, size = [], 0
    for path in stdlib_files(root):
        chunk = f"# file: {path.relative_to(root).as_posix()}\n".encode() + path.read_bytes() + b"\n"
        parts.append(chunk)
        size += len(chunk)
        if size >= max_bytes:
            break
    return b"".join(parts)[:max_bytes]


def from_bytes(data: bytes, source: str, val_fraction: float = 0.1) -> Corpus:
    tokens = np.frombuffer(data, dtype=np.uint8).copy()
    return Corpus(tokens, 256, source, hashlib.sha256(data).hexdigest(), val_fraction)


def default_corpus(max_bytes: int = DEFAULT_MAX_BYTES, val_fraction: float = 0.1) -> Corpus:
    """The embedded default corpus (see the module docstring)."""
    import platform

    data = default_corpus_bytes(max_bytes)
    return from_bytes(data, f"python{platform.python_version()}-stdlib[:{max_bytes}]", val_fraction)


def load_corpus(path: str | os.PathLike | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
                val_fraction: float = 0.1) -> Corpus:
    """``None``: the embedded default. A ``.bin`` file: flat uint16 tokens. Anything else: text read as bytes."""
    if path is None:
        return default_corpus(max_bytes, val_fraction)
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"path must name an existing file, got {str(path)!r}")
    if p.suffix == ".bin":
        raw = p.read_bytes()
        if len(raw) % 2:
            raise ValueError(f"path {str(path)!r}: a .bin token file must hold uint16 values (even byte count)")
        tokens = np.frombuffer(raw, dtype="<u2").astype(np.int64)
        vocab = int(tokens.max()) + 1
        if vocab > 256:  # GPT-2 BPE ids: keep the full vocabulary so an embedding matches the tokenizer
            vocab = max(vocab, GPT2_VOCAB)
        return Corpus(tokens, vocab, f"uint16:{p.name}", hashlib.sha256(raw).hexdigest(), val_fraction)
    return from_bytes(p.read_bytes(), f"text:{p.name}", val_fraction)
