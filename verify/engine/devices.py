"""Device resolution: a clear error for an unknown or absent device, TF32 off whenever CUDA is used."""
from __future__ import annotations

import contextlib
import functools

import torch


def resolve_device(device) -> torch.device:
    """Turn ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a torch.device into a usable device, or raise ValueError."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'cpu' or 'cuda[:i]', got {device!r}") from exc
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise ValueError(f"device must be 'cpu' or 'cuda[:i]', got {device!r}")
    if not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but CUDA is not available on this machine")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    # Checks compare against float64 theory: TF32 would silently turn float32 matmuls into 10-bit-mantissa ones.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return dev


def available_devices() -> list[str]:
    """Devices the checks run on here: always the CPU, CUDA when present."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@contextlib.contextmanager
def single_thread():
    """Run torch on one intra-op thread, then restore the count.

    The checks are many tiny batched tensor operations, for which thread hand-offs cost more than the arithmetic:
    on the 2-core reference machine, under load, two OpenMP threads made them 2–30× slower than one.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def single_threaded(fn):
    """Decorator: run ``fn`` under :func:`single_thread`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with single_thread():
            return fn(*args, **kwargs)

    return wrapper
