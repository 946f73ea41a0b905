"""The contract between ``python -m verify.check`` and a user's block: loading a factory and calling it.

A factory is a callable found by ``package.module:callable`` (``--factory``) or by name among the library blocks
(``--module``). Two protocols are accepted, told apart by the factory's signature:

- **plain** — ``make_block(d, seed, **options) -> nn.Module``: an ordinary single-model block mapping (batch, n, d)
  or (n, d) to the same shape. The tool calls it once per instance and per layer with its own seed (and seeds
  torch's global generator to the same value first, so blocks built from ``nn.Linear`` defaults are reproducible
  and differ between instances), then runs the instances as one batched computation (``layers.InstanceStack``).
- **batched** (the original protocol) — ``make_block(d, n_instances, seed) -> nn.Module`` whose forward maps
  (n_instances, n, d) to the same shape with one independent set of weights per leading index.

Every other keyword a factory declares can be given with ``--factory-arg KEY=VALUE``; ``--heads``, ``--norm`` and
``--init-scale`` are passed as ``n_heads``, ``norm`` and ``init_scale`` when the factory accepts them and refused
otherwise; ``dt`` is passed when the factory declares it, else Δt is applied outside as X + Δt·(block(X) − X);
``depth`` (the number of blocks in the stack being built) is passed when the factory declares it or the user
names it with ``--factory-arg depth=…``.

Everything the user's code does wrong ends here as a :class:`ContractError` with a one-line message naming the
problem (the CLI prints it and exits with status 2).
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable

import torch
from torch import nn


class ContractError(ValueError):
    """The user's block does not fit the contract of ``python -m verify.check``."""


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line (user exceptions often carry multi-line messages)."""
    msg = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def load_factory(path: str) -> Callable:
    if not isinstance(path, str) or path.count(":") != 1 or not all(path.split(":")):
        raise ContractError(f"factory must be 'package.module:callable', got {path!r}")
    mod_name, attr = path.split(":")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ContractError(f"factory: cannot import module {mod_name!r} ({one_line(exc)}); is its folder on "
                            f"PYTHONPATH?") from exc
    except Exception as exc:  # the user's module raised while being imported
        raise ContractError(f"factory: importing {mod_name!r} raised {one_line(exc)}") from exc
    fn = getattr(mod, attr, None)
    if fn is None or not callable(fn):
        raise ContractError(f"factory: {mod_name!r} has no callable {attr!r}")
    return fn


# Flags of the CLI that a factory may take, and the keyword each is passed as.
FLAG_KEYWORDS = {"heads": "n_heads", "norm": "norm", "init_scale": "init_scale"}


@dataclasses.dataclass
class FactorySpec:
    """How to call one factory: its protocol and the keywords that go with every call."""

    fn: Callable
    name: str
    protocol: str  # "plain" | "batched"
    keywords: dict
    takes_dt: bool
    takes_seed: bool
    takes_depth: bool = False  # the block needs the stack's depth (CompleteP's Δt = L^−α): passed per build


def _parameters(fn: Callable) -> tuple[dict, bool]:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise ContractError(f"factory: cannot read the signature of {fn!r} ({one_line(exc)})") from exc
    params = dict(sig.parameters)
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return params, var_kw


def _accepts(params: dict, var_kw: bool, name: str) -> bool:
    p = params.get(name)
    if p is not None:
        return p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return var_kw


def factory_spec(fn: Callable, name: str, flags: dict, factory_args: dict) -> FactorySpec:
    """Decide the protocol and the fixed keywords; refuse flags the factory cannot take.

    ``flags`` maps CLI flag names (``heads``, ``norm``, ``init_scale``) to the values the user gave (None = not
    given); ``factory_args`` are the ``--factory-arg`` keywords, passed as they are.
    """
    params, var_kw = _parameters(fn)
    if not _accepts(params, var_kw, "d"):
        raise ContractError(f"factory {name} must accept the keyword d (the width); its signature is "
                            f"{inspect.signature(fn)}")
    protocol = "batched" if "n_instances" in params else "plain"
    keywords = {}
    for flag, value in flags.items():
        if value is None:
            continue
        kw = FLAG_KEYWORDS[flag]
        if not _accepts(params, var_kw, kw):
            raise ContractError(f"--{flag.replace('_', '-')} {value}: factory {name} takes no {kw!r} keyword, so "
                                f"the flag would be ignored; the block fixes it itself")
        keywords[kw] = value
    for key, value in factory_args.items():
        if key in ("d", "seed", "n_instances"):
            raise ContractError(f"--factory-arg {key}: the tool sets {key} itself")
        if not _accepts(params, var_kw, key):
            raise ContractError(f"--factory-arg {key}={value!r}: factory {name} takes no {key!r} keyword")
        keywords[key] = value
    takes_dt = "dt" in params and _accepts(params, var_kw, "dt")
    if "dt" in keywords:
        raise ContractError("--factory-arg dt: give Δt with --dt (it is passed to a factory that declares dt)")
    # depth: declared by name, or given with --factory-arg depth=… to a **options factory; either way the depth of
    # the stack being built is passed (the coordinate check builds several), never a fixed value
    takes_depth = ("depth" in params and _accepts(params, var_kw, "depth")) or "depth" in keywords
    keywords.pop("depth", None)
    return FactorySpec(fn, name, protocol, keywords, takes_dt, takes_seed=_accepts(params, var_kw, "seed"),
                       takes_depth=takes_depth)


def call_factory(spec: FactorySpec, d: int, seed: int, n_instances: int | None = None,
                 dt: float | None = None, depth: int | None = None) -> nn.Module:
    """One call of the factory, every failure a ContractError naming what went wrong."""
    kwargs = dict(spec.keywords, d=d)
    if spec.takes_seed:
        kwargs["seed"] = seed
    if spec.protocol == "batched":
        kwargs["n_instances"] = n_instances
    if dt is not None and spec.takes_dt:
        kwargs["dt"] = dt
    if depth is not None and spec.takes_depth:
        kwargs["depth"] = depth
    try:
        inspect.signature(spec.fn).bind(**kwargs)
    except TypeError as exc:  # a signature mismatch, told apart from a TypeError raised inside the factory
        raise ContractError(f"factory {spec.name} cannot be called with keywords {sorted(kwargs)}: "
                            f"{one_line(exc)}") from exc
    torch.manual_seed(seed)  # factories drawing from torch's global generator (nn.Linear defaults) get this seed
    try:
        block = spec.fn(**kwargs)
    except Exception as exc:
        raise ContractError(f"factory {spec.name}(d={d}, seed={seed}{', ...' if len(kwargs) > 2 else ''}) raised "
                            f"{one_line(exc)}") from exc
    if not isinstance(block, nn.Module):
        raise ContractError(f"factory {spec.name} must return a torch.nn.Module, got {type(block).__name__}")
    return block


def to_float64(block: nn.Module) -> list[str]:
    """Convert a block's floating parameters and buffers to float64; names of what was converted."""
    converted = [f"{n} ({t.dtype})" for n, t in [*block.named_parameters(), *block.named_buffers()]
                 if t.is_floating_point() and t.dtype != torch.float64]
    block.to(torch.float64)
    return converted


def forward_error(what: str, exc: BaseException) -> ContractError:
    """A ContractError for an exception raised by the user's forward, with a hint where the cause is common."""
    msg = one_line(exc)
    hint = ""
    low = msg.lower()
    if any(s in low for s in ("float", "double", "dtype", "scalar type")):
        hint = " — the tool runs float64: create tensors inside forward with the input's dtype and device"
    elif "shape" in low or "size" in low or "dimension" in low:
        hint = " — the tool feeds (batch, n, d) (or (n, d)) hidden states"
    return ContractError(f"{what} raised {msg}{hint}")
