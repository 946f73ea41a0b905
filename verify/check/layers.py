"""The layers ``python -m verify.check`` measures: I independent instances of one block as one (I, n, d) map.

Every layer of the chain is a :class:`ChainLayer`: a module mapping hidden states of shape (I, n, d) to the same
shape, instance i on its own weights. It also says what the measurements need to see inside a block:

- ``step_names`` — the residual steps the block is made of, when it exposes them (a ``residual_steps`` tuple of
  method names, or ``attention_step`` and ``mlp_step`` methods composing to ``forward``); ``run_step(k, x)`` runs
  one of them. A block that exposes none is one step;
- ``matrix_parameters`` — its weight matrices (parameters with two or more non-trivial axes per instance), the
  ones the weight-scale invariance probe multiplies;
- ``hook_module(i)`` — instance i as a module whose submodules forward hooks can read (the residual-contribution
  identity).

Four kinds: :class:`ZooBlock` (one block of the zoo, its residual steps), :class:`BatchedBlock` (the original
batched protocol), :class:`InstanceStack` (a plain single-model block, made into I instances with
``torch.func.stack_module_state`` + ``vmap``, or a loop over the instances where ``vmap`` cannot run the block)
and :class:`EulerRescaled` (any of them run as X + Δt·(step(X) − X)).
"""
from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from verify.check.contract import ContractError, forward_error

# The convention the gallery designs follow (and the README documents): a block that defines both methods and
# whose forward is mlp_step(attention_step(x)) exposes its two residual steps.
STEP_CONVENTION = ("attention_step", "mlp_step")


def nontrivial_axes(shape: Sequence[int]) -> int:
    return sum(1 for s in shape if s > 1)


class ChainLayer(nn.Module):
    """One layer of the measured chain: (I, n, d) -> (I, n, d) over I independent instances."""

    n_instances: int = 1
    step_names: tuple[str, ...] = ("forward",)
    description: str = ""

    def run_step(self, k: int, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k in range(len(self.step_names)):
            x = self.run_step(k, x)
        return x

    def matrix_parameters(self) -> list[torch.Tensor]:
        raise NotImplementedError

    def hook_module(self, i: int) -> tuple[nn.Module, bool]:
        """(module, batched): a module for forward hooks and whether it takes all instances at once."""
        raise NotImplementedError

    def hook_step(self, module: nn.Module, k: int, x: torch.Tensor) -> torch.Tensor:
        """Run step k of ``hook_module``'s module on x (that module's own input layout)."""
        raise NotImplementedError

    def reported_branch(self, k: int, x: torch.Tensor):
        """(Δt, branch output) the block itself reports for step k, or None (then hooks are used)."""
        return None


# ---- the zoo --------------------------------------------------------------------------------------------------
class ZooBlock(ChainLayer):
    """One zoo block: its residual steps (attention and/or MLP), each a ``zoo.ResidualStep`` with branch and Δt."""

    def __init__(self, steps: Sequence[nn.Module], n_instances: int):
        super().__init__()
        self.steps = nn.ModuleList(steps)
        self.n_instances = n_instances
        self.step_names = tuple(f"{s.kind}_step" for s in steps)

    def run_step(self, k, x):
        return self.steps[k](x)

    def matrix_parameters(self):
        return [p for p in self.parameters() if nontrivial_axes(p.shape[1:]) >= 2]

    def hook_module(self, i):
        return self, True

    def hook_step(self, module, k, x):
        return self.steps[k](x)

    def reported_branch(self, k, x):
        step = self.steps[k]
        return step.dt, step.branch(x)


def zoo_blocks(stack) -> list[ZooBlock]:
    """Group a ``zoo.Stack``'s residual steps into its blocks."""
    cfg = stack.cfg
    per = len(cfg.sublayers)
    steps = list(stack.steps)
    return [ZooBlock(steps[b * per:(b + 1) * per], stack.n_instances) for b in range(cfg.n_blocks)]


# ---- user blocks ----------------------------------------------------------------------------------------------
def declared_steps(block: nn.Module) -> tuple[str, ...] | None:
    """The residual steps a block declares (``residual_steps``) or exposes by convention, else None."""
    names = getattr(block, "residual_steps", None)
    if names is not None:
        if isinstance(names, str) or not all(isinstance(n, str) and callable(getattr(block, n, None)) for n in names):
            raise ContractError(f"residual_steps of {type(block).__name__} must be a tuple of method names, got "
                                f"{names!r}")
        return tuple(names)
    if all(callable(getattr(block, n, None)) for n in STEP_CONVENTION):
        return STEP_CONVENTION
    return None


class BatchedBlock(ChainLayer):
    """A block of the batched protocol: forward maps (I, n, d) to (I, n, d), weights per leading index."""

    def __init__(self, module: nn.Module, n_instances: int, step_names: tuple[str, ...] | None):
        super().__init__()
        self.module = module
        self.n_instances = n_instances
        self.step_names = step_names or ("forward",)

    def run_step(self, k, x):
        return getattr(self.module, self.step_names[k])(x)

    def matrix_parameters(self):
        return [p for p in self.module.parameters() if nontrivial_axes(p.shape[1:]) >= 2]

    def hook_module(self, i):
        return self.module, True

    def hook_step(self, module, k, x):
        return getattr(module, self.step_names[k])(x)


class _Method(nn.Module):
    """``forward`` = one named method of the wrapped module, so ``functional_call`` can run any residual step."""

    def __init__(self, module: nn.Module, name: str):
        super().__init__()
        self.m, self.name = module, name

    def forward(self, x):
        return getattr(self.m, self.name)(x)


class InstanceStack(ChainLayer):
    """I independent copies of a plain single-model block, run as one (I, n, d) computation.

    ``form`` is how one instance is fed: ``"batch"`` as (1, n, d), ``"single"`` as (n, d). In ``"vmap"`` mode the
    instances' parameters are stacked (``torch.func.stack_module_state``) and the block runs under ``vmap``
    over them — one batched computation, trainable through the stacked parameters. ``"loop"`` runs the instances
    one after the other (for blocks ``vmap`` cannot run, e.g. with in-place buffer updates); same numbers.
    """

    def __init__(self, modules: Sequence[nn.Module], form: str, step_names: tuple[str, ...] | None, mode: str):
        super().__init__()
        self.n_instances = len(modules)
        self.form, self.mode = form, mode
        self.step_names = step_names or ("forward",)
        self._plain = list(modules)  # not registered: in vmap mode the stacked tensors are the parameters
        if mode == "vmap":
            params, buffers = stack_module_state(list(modules))
            self._pnames, self._bnames = list(params), list(buffers)
            self.stacked = nn.ParameterList([nn.Parameter(params[k].detach().clone()) for k in self._pnames])
            for j, k in enumerate(self._bnames):
                self.register_buffer(f"stacked_buffer_{j}", buffers[k].detach().clone())
            base = copy.deepcopy(modules[0])
            self._bound = {n: _Method(base, n) for n in self.step_names}
        elif mode == "loop":
            self.instances = nn.ModuleList(modules)
        else:
            raise ValueError(f"mode must be 'vmap' or 'loop', got {mode!r}")

    def _state(self) -> tuple[dict, dict]:
        params = {f"m.{k}": p for k, p in zip(self._pnames, self.stacked)}
        buffers = {f"m.{k}": getattr(self, f"stacked_buffer_{j}") for j, k in enumerate(self._bnames)}
        return params, buffers

    def run_step(self, k, x):
        name = self.step_names[k]
        xin = x.unsqueeze(1) if self.form == "batch" else x
        if self.mode == "vmap":
            params, buffers = self._state()
            bound = self._bound[name]

            def one(p, b, xi):
                return functional_call(bound, (p, b), (xi,))

            with warnings.catch_warnings():  # "no batching rule for <op>": a speed note, not the user's concern
                warnings.filterwarnings("ignore", message=".*batching rule.*", category=UserWarning)
                out = vmap(one, randomness="different")(params, buffers, xin)
        else:
            out = torch.stack([getattr(m, name)(xi) for m, xi in zip(self.instances, xin)])
        return out.squeeze(1) if self.form == "batch" else out

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self._plain:
            m.train(mode)
        if self.mode == "vmap":
            for b in self._bound.values():
                b.train(mode)
        return self

    def matrix_parameters(self):
        if self.mode == "vmap":
            return [p for p in self.stacked if nontrivial_axes(p.shape[1:]) >= 2]
        return [p for m in self.instances for p in m.parameters() if nontrivial_axes(p.shape) >= 2]

    @torch.no_grad()
    def hook_module(self, i):
        m = self._plain[i]
        if self.mode == "vmap":  # bring instance i's current (possibly trained) parameters into its module
            own = dict(m.named_parameters())
            for k, p in zip(self._pnames, self.stacked):
                own[k].copy_(p[i])
            own_b = dict(m.named_buffers())
            for j, k in enumerate(self._bnames):
                own_b[k].copy_(getattr(self, f"stacked_buffer_{j}")[i])
        return m, False

    def hook_step(self, module, k, x):  # x: (n, d) of one instance
        xin = x.unsqueeze(0) if self.form == "batch" else x
        out = getattr(module, self.step_names[k])(xin)
        return out.squeeze(0) if self.form == "batch" else out


class EulerRescaled(ChainLayer):
    """Each residual step of ``inner`` run as X + Δt·(step(X) − X): a step of size Δt along the step's update."""

    def __init__(self, inner: ChainLayer, dt: float):
        super().__init__()
        self.inner, self.dt = inner, float(dt)
        self.n_instances = inner.n_instances
        self.step_names = inner.step_names

    def run_step(self, k, x):
        return x + self.dt * (self.inner.run_step(k, x) - x)

    def matrix_parameters(self):
        return self.inner.matrix_parameters()

    def hook_module(self, i):
        return self.inner.hook_module(i)

    def hook_step(self, module, k, x):
        y = self.inner.hook_step(module, k, x)
        return x + self.dt * (y - x)

    def reported_branch(self, k, x):
        rep = self.inner.reported_branch(k, x)
        return None if rep is None else (self.dt * rep[0], rep[1])


# ---- making instances ------------------------------------------------------------------------------------------
def probe_input(n_instances: int, n_tokens: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n_instances, n_tokens, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _call_plain(module: nn.Module, x: torch.Tensor, form: str, what: str) -> torch.Tensor:
    xin = x.unsqueeze(0) if form == "batch" else x
    out = module(xin)
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        raise ContractError(f"{what} returned a {type(out).__name__}; it must return one tensor of the input's "
                            f"shape (wrap a library block that returns tuples)")
    if not isinstance(out, torch.Tensor) or out.shape != xin.shape:
        raise ContractError(f"{what} must map {tuple(xin.shape)} to the same shape, got "
                            f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}")
    return out.squeeze(0) if form == "batch" else out


def input_form(module: nn.Module, x1: torch.Tensor, what: str) -> str:
    """Does a plain block take (batch, n, d) or only (n, d)? Tried on one instance's probe x1 (n, d)."""
    try:
        _call_plain(module, x1, "batch", what)
        return "batch"
    except ContractError:
        raise
    except Exception as first:
        try:
            _call_plain(module, x1, "single", what)
            return "single"
        except ContractError:
            raise
        except Exception:
            raise forward_error(f"{what} on a (1, n, d) input", first) from first


def stack_instances(modules: Sequence[nn.Module], probe: torch.Tensor, what: str, mode: str | None = None
                    ) -> InstanceStack:
    """An InstanceStack of ``modules`` (one per instance), checked on ``probe`` (I, n, d).

    ``mode=None`` tries ``vmap`` and falls back to the loop if it raises or disagrees with the loop beyond
    round-off; the loop's output is the reference either way.
    """
    form = input_form(modules[0], probe[0], what)
    steps = declared_steps(modules[0])
    loop = InstanceStack(modules, form, steps, "loop")
    try:
        ref = loop(probe)
    except ContractError:
        raise
    except Exception as exc:
        raise forward_error(what, exc) from exc
    if steps is not None:
        try:
            whole = torch.stack([_call_plain(m, xi, form, what) for m, xi in zip(modules, probe)])
        except ContractError:
            raise
        except Exception as exc:
            raise forward_error(what, exc) from exc
        if not torch.allclose(whole, ref, rtol=1e-10, atol=1e-12):  # round-off of a few float64 matmuls
            raise ContractError(f"{what}: forward differs from composing its residual steps {steps}; fix "
                                f"residual_steps or the methods")
    if mode == "loop":
        return loop
    try:
        stacked = InstanceStack(modules, form, steps, "vmap")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = stacked(probe)
        if out.shape == ref.shape and torch.allclose(out, ref, rtol=1e-10, atol=1e-12):
            return stacked
    except Exception:  # vmap cannot run this block: the loop computes the same numbers
        pass
    return loop
