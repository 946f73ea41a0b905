"""Turning the command line's design (a zoo placement, a factory or a library module) into measured layers.

A :class:`Design` knows where its blocks come from and which flags act on them; ``build(d, depth, dt, seed, I,
n)`` returns the chain of ``depth`` layers of I independent instances, with the notes a user should read (weights
converted to float64, Δt applied outside the block, instances that turned out to share weights, …).

Seeds: layer l of a zoo configuration is part of one ``zoo.Stack`` drawn from ``seed``; a batched factory is
called with ``seed + l``; a plain factory once per layer and instance with ``seed + l·I + i`` (torch's global
generator is seeded with the same value first).
"""
from __future__ import annotations

import dataclasses

import torch

from verify.check.contract import (
    ContractError,
    FactorySpec,
    call_factory,
    factory_spec,
    forward_error,
    load_factory,
    to_float64,
)
from verify.check.layers import (
    BatchedBlock,
    ChainLayer,
    EulerRescaled,
    declared_steps,
    probe_input,
    stack_instances,
    zoo_blocks,
)
from verify.check.library import LIBRARY, library_factory
from verify.engine.zoo import Placement, Stack, StackConfig

ZOO_PLACEMENTS = tuple(p.value for p in Placement)


@dataclasses.dataclass
class Built:
    layers: list[ChainLayer]
    base_layers: list[ChainLayer]  # before Δt is applied outside (the same as layers when it is not)
    notes: list[str]
    effective_instances: int
    single_step: bool  # each probed step is one residual step (zoo, or a block exposing its steps)
    protocol: str


class Design:
    """Where the blocks come from and how the flags act on them (refused flags raise ContractError)."""

    def __init__(self, placement=None, factory=None, module=None, heads=None, norm=None, init_scale=None,
                 sublayers=None, factory_args=None):
        given = [x for x in (placement, factory, module) if x is not None]
        if len(given) != 1:
            raise ContractError("give exactly one of --placement (a zoo configuration), --factory (module:callable) "
                                "or --module (a library block)")
        self.factory_args = dict(factory_args or {})
        self.placement = placement
        self.heads, self.norm, self.init_scale = heads, norm, init_scale
        self._mode = None  # vmap or loop, decided on the first plain layer and kept
        if placement is not None:
            if placement not in ZOO_PLACEMENTS:
                raise ContractError(f"--placement must be one of {ZOO_PLACEMENTS}, got {placement!r}")
            if self.factory_args:
                raise ContractError("--factory-arg applies to --factory or --module, not to a zoo placement")
            self.sublayers = tuple(sublayers) if sublayers else ("mlp",)
            if heads is not None and heads > 1 and "attn" not in self.sublayers:
                raise ContractError(f"--heads {heads} acts on attention only, and the zoo blocks here are "
                                    f"{'+'.join(self.sublayers)}: add --sublayers attn,mlp")
            self.kind, self.label, self.spec = "zoo", f"zoo placement {placement}", None
            return
        if sublayers:
            raise ContractError("--sublayers applies to a zoo placement; a factory's block fixes its own sublayers")
        flags = {"heads": heads, "norm": norm, "init_scale": init_scale}
        if factory is not None:
            fn, name, self.kind = load_factory(factory), factory, "factory"
        else:
            key, fn = library_factory(module)
            name, self.kind = f"--module {key}", "library"
            self.library_description = LIBRARY[key][1]
        self.spec: FactorySpec = factory_spec(fn, name, flags, self.factory_args)
        self.label = name if self.kind == "library" else f"factory {name}"

    @property
    def dt_inside(self) -> bool:
        """Whether Δt is the design's own (zoo, or a factory declaring dt) rather than applied outside."""
        return self.kind == "zoo" or self.spec.takes_dt

    # ---- building ------------------------------------------------------------------------------------------
    def build(self, d: int, depth: int, dt: float, seed: int, n_instances: int, n_tokens: int,
              progress=None) -> Built:
        self._progress = progress
        if self.kind == "zoo":
            cfg = StackConfig(d=d, n_blocks=depth, placement=self.placement, norm=self.norm or "layer",
                              n_heads=self.heads or 1, dt=dt, weight_scale=self.init_scale or 1.0,
                              sublayers=self.sublayers)
            blocks = zoo_blocks(Stack(cfg, n_instances, seed=seed))
            return Built(blocks, blocks, [], n_instances, True, "zoo")
        probe = probe_input(n_instances, n_tokens, d, seed)
        notes: list[str] = []
        if self.spec.protocol == "batched":
            layers, effective, single = self._batched(d, depth, dt, seed, n_instances, probe, notes)
        else:
            layers, effective, single = self._plain(self.spec, d, depth, dt, seed, n_instances, probe, notes)
        base = layers
        if not self.spec.takes_dt and dt != 1.0:
            layers = [EulerRescaled(layer, dt) for layer in layers]
            notes.append(f"Δt = {dt:g} is applied outside the block, each residual step as X + Δt·(step(X) − X) "
                         f"(the factory takes no dt keyword); for a block that normalises its output this "
                         f"interpolates towards the identity rather than scaling a branch")
        return Built(layers, base, notes, effective, single, self.spec.protocol)

    def at_dt(self, built: Built, dt: float, d: int, depth: int, seed: int, n_instances: int,
              n_tokens: int) -> list[ChainLayer]:
        """The same design at another Δt: rebuilt where Δt is the design's own, else the same blocks rescaled."""
        if self.dt_inside:
            return self.build(d, depth, dt, seed, n_instances, n_tokens).layers
        return list(built.base_layers) if dt == 1.0 else [EulerRescaled(b, dt) for b in built.base_layers]

    def _tick(self):
        if getattr(self, "_progress", None) is not None:
            self._progress()

    def _dtype_note(self, converted: list[str], notes: list[str]) -> None:
        if converted and not any(n.startswith("converted") for n in notes):
            notes.append(f"converted {len(converted)} parameter/buffer tensor(s) to float64, e.g. {converted[0]}: the "
                         f"tool runs float64")

    def _batched(self, d, depth, dt, seed, I, probe, notes):
        layers, steps = [], None
        for l in range(depth):
            block = call_factory(self.spec, d, seed + l, n_instances=I, dt=dt, depth=depth)
            self._dtype_note(to_float64(block), notes)
            what = f"block {l} from {self.spec.name}"
            out = _checked_forward(block, probe, what)
            if l == 0:
                if I > 1 and _shares_weights(block, probe):
                    notes.append("the batched block gives identical outputs for identical inputs in every instance "
                                 "(weights shared across the leading dimension, e.g. nn.Linear): rebuilt as "
                                 "independent instances, one factory call per instance with n_instances=1 and its "
                                 "own seed, so the bootstrap resamples independent networks")
                    return self._plain(self.spec, d, depth, dt, seed, I, probe, notes, n_instances_kw=1)
                steps = declared_steps(block)
            del out
            layers.append(BatchedBlock(block, I, steps))
            self._tick()
        return layers, I, steps is not None

    def _plain(self, spec, d, depth, dt, seed, I, probe, notes, n_instances_kw=None):
        layers = []
        effective = I
        for l in range(depth):
            modules = []
            for i in range(I):
                m = call_factory(spec, d, seed + l * I + i, n_instances=n_instances_kw, dt=dt, depth=depth)
                self._dtype_note(to_float64(m), notes)
                modules.append(m.eval())
            what = f"block {l} from {spec.name}"
            layer = stack_instances(modules, probe, what, mode=self._mode)
            if self._mode is None:
                self._mode = layer.mode
                if layer.mode == "loop":
                    notes.append("torch.func.vmap cannot run this block; its instances run one after the other "
                                 "(same numbers, slower)")
            out = _checked_forward(layer, probe, what)
            del out
            if l == 0 and I > 1 and _shares_weights(layer, probe):
                effective = 1
                notes.append("every seed gives the same block (identical inputs give identical outputs in every "
                             "instance): the factory ignores its seed, so there is one network, no independent "
                             "instances, and no bootstrap interval")
            layers.append(layer)
            self._tick()
        return layers, effective, declared_steps(layers[0]._plain[0]) is not None


def _checked_forward(block, probe: torch.Tensor, what: str) -> torch.Tensor:
    try:
        with torch.no_grad():
            out = block(probe)
    except ContractError:
        raise
    except Exception as exc:
        raise forward_error(what, exc) from exc
    if not isinstance(out, torch.Tensor) or out.shape != probe.shape:
        raise ContractError(f"{what} must map (n_instances, n, d) = {tuple(probe.shape)} to the same shape, got "
                            f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}")
    if out.dtype != torch.float64:
        raise ContractError(f"{what} returned {out.dtype} for a float64 input: the tool runs float64 (compute in "
                            f"the input's dtype)")
    if not bool(torch.isfinite(out).all()):
        raise ContractError(f"{what} output contains NaN or inf on a standard Gaussian input")
    return out


@torch.no_grad()
def _shares_weights(block, probe: torch.Tensor) -> bool:
    """Identical inputs give identical outputs in every instance: the instances are one network."""
    same = probe[:1].expand_as(probe).contiguous()
    out = block(same)
    scale = out[0].abs().max().clamp_min(1e-300)
    if bool(((out - same).abs().max() <= 1e-12 * scale)):  # the identity (ReZero at init) hides its weights
        return False
    return bool(((out - out[:1]).abs().amax(dim=(-1, -2)) <= 1e-12 * scale).all())
