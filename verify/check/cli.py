"""The command line of the sanity check: ``python -m verify.check`` (see the README's section on it).

Every bad input ends as one line on stderr, ``python -m verify.check: error: <what is wrong>``, and exit status 2:
unknown flags and malformed values, a factory that cannot be imported, called or run, a block of the wrong shape
or dtype or with NaN output, flags the design would ignore, an output path that cannot be written (checked
before any work). ``--traceback`` shows the Python traceback instead, for debugging a factory.
"""
from __future__ import annotations

import argparse
import ast
import importlib
import json
import pkgutil
import tempfile
from pathlib import Path

from verify.check.contract import ContractError
from verify.check.core import ZOO_PLACEMENTS, Options, run
from verify.check.library import ALIASES, LIBRARY
from verify.check.report import draw, draw_coord, lines

PROG = "python -m verify.check"


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints the whole usage block; one line names the problem
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _list_of(kind, what: str):
    """An argparse type: comma-separated values of ``kind`` (at least one), else a one-line error."""
    def parse(text: str) -> tuple:
        try:
            vals = tuple(kind(v) for v in text.split(",") if v.strip())
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}") from exc
        if not vals:
            raise argparse.ArgumentTypeError(f"expected at least one of the {what}, got {text!r}")
        return vals

    return parse


_floats = _list_of(float, "numbers")
_ints = _list_of(int, "integers")


def _names(text: str) -> tuple[str, ...]:
    vals = tuple(v.strip() for v in text.split(",") if v.strip())
    if not vals:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return vals


def _keyword(text: str) -> tuple[str, object]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with KEY a Python identifier, got {text!r}")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = {"true": True, "false": False, "none": None}.get(raw.strip().lower(), raw)
    return key.strip(), value


def shipped_designs() -> list[str]:
    """Factories under verify.check.designs (modules with a make_block), as --factory paths."""
    import verify.check.designs as pkg

    found = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_"):
            continue
        try:
            mod = importlib.import_module(f"verify.check.designs.{info.name}")
        except Exception:  # a broken example must not break the listing
            continue
        if callable(getattr(mod, "make_block", None)):
            found.append(f"verify.check.designs.{info.name}:make_block")
    return found


def listing() -> str:
    from verify.check.placement import THEOREMS

    out = ["zoo placements (--placement): " + ", ".join(ZOO_PLACEMENTS),
           "library blocks (--module): " + "; ".join(f"{k} = {v[1]}" for k, v in LIBRARY.items())
           + " (aliases: " + ", ".join(f"{a} -> {b}" for a, b in ALIASES.items()) + ")",
           "shipped designs (--factory): " + ", ".join(shipped_designs()),
           "placements it recognises: " + ", ".join(THEOREMS),
           "theorem ids it uses: F1 F2 F3 F4 F5 and C1a–C1c (docs/theorems.md, chapter C); registered check: C1 "
           "(python -m verify --only C1)"]
    return "\n".join(out)


def parser() -> OneLineParser:
    d = Options()
    ap = OneLineParser(prog=PROG, description="Sanity-check a Transformer block design before training it: growth "
                       "regime, recognised placement with the expected curve of its theorem, residual identity, "
                       "measured stability criterion.")
    ap.add_argument("--list", action="store_true", help="list placements, library blocks and shipped designs")
    src = ap.add_argument_group("the design (exactly one)")
    src.add_argument("--placement", help=f"a zoo configuration: {', '.join(ZOO_PLACEMENTS)}")
    src.add_argument("--factory", help="package.module:callable returning a block (README: the factory contract)")
    src.add_argument("--module", help=f"a library block with random weights: {', '.join(LIBRARY)}")
    src.add_argument("--factory-arg", action="append", type=_keyword, default=[], metavar="KEY=VALUE",
                     help="a keyword for the factory (repeatable; VALUE a Python literal)")
    size = ap.add_argument_group("size")
    size.add_argument("--depth", type=int, default=d.depth, help="blocks in the stack")
    size.add_argument("--d", type=int, default=d.d, help="width")
    size.add_argument("--tokens", dest="n_tokens", type=int, default=d.n_tokens)
    size.add_argument("--instances", type=int, default=d.instances, help="independent random instances")
    size.add_argument("--seed", type=int, default=d.seed)
    blk = ap.add_argument_group("block options (refused where the design would ignore them)")
    blk.add_argument("--heads", type=int, default=None, help="attention heads (zoo with attention; factory n_heads)")
    blk.add_argument("--norm", choices=("layer", "rms"), default=None, help="zoo norm kind; factory keyword norm")
    blk.add_argument("--init-scale", type=float, default=None, help="zoo weight scale; factory keyword init_scale")
    blk.add_argument("--sublayers", type=_names, default=None, help="zoo sublayers, e.g. attn,mlp (default mlp)")
    blk.add_argument("--dt", type=float, default=d.dt, help="residual step size (the design's own where it takes "
                     "one, else X + Δt·(step(X) − X))")
    blk.add_argument("--branch-hooks", type=_names, default=None,
                     help="submodules whose outputs are the reported branch outputs (residual identity)")
    crit = ap.add_argument_group("criterion")
    crit.add_argument("--B", type=float, default=d.B, help="admissible forward gain band [1/B, B]")
    crit.add_argument("--tau", type=float, default=d.tau, help="admissible backward log-gain band [−τ, τ]")
    crit.add_argument("--dt-grid", type=_floats, default=d.dt_grid, help="Δt values of the criterion sweep")
    more = ap.add_argument_group("training and the coordinate check")
    more.add_argument("--train-steps", type=int, default=d.train_steps,
                      help="then train this many AdamW steps on the embedded corpus and measure again")
    more.add_argument("--lr", type=float, default=d.lr)
    more.add_argument("--coord-widths", type=_ints, default=None, help="widths of the coordinate check "
                      "(default d/2,d,2d; 'none' with --no-coord)")
    more.add_argument("--coord-depths", type=_ints, default=None, help="depths of the coordinate check "
                      "(default depth/2,depth)")
    more.add_argument("--no-coord", action="store_true", help="skip the coordinate check")
    io = ap.add_argument_group("output")
    io.add_argument("--out", type=Path, default=Path("figures/check"), help="folder for check.json, check.png, "
                    "coord.png")
    io.add_argument("--json", default=None, metavar="PATH", help="also write the result as JSON here ('-': stdout, "
                    "instead of the text)")
    io.add_argument("--quiet", action="store_true", help="no progress bar")
    io.add_argument("--traceback", action="store_true", help="show Python tracebacks instead of one-line errors")
    return ap


def _writable_dir(path: Path, what: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ContractError(f"{what} {path} is not writable ({exc.strerror or exc})") from exc


def options_from(args) -> Options:
    coord_w = () if args.no_coord else (args.coord_widths or tuple(sorted({max(2, args.d // 2), args.d, 2 * args.d})))
    coord_d = () if args.no_coord else (args.coord_depths or tuple(sorted({max(4, args.depth // 2), args.depth})))
    keys = [k for k, _ in args.factory_arg]
    if len(set(keys)) != len(keys):
        raise ContractError(f"--factory-arg given twice for {sorted({k for k in keys if keys.count(k) > 1})}")
    return Options(placement=args.placement, factory=args.factory, module=args.module,
                   factory_args=dict(args.factory_arg), depth=args.depth, d=args.d, n_tokens=args.n_tokens,
                   instances=args.instances, heads=args.heads, norm=args.norm, dt=args.dt,
                   init_scale=args.init_scale, sublayers=args.sublayers, seed=args.seed, B=args.B, tau=args.tau,
                   dt_grid=args.dt_grid, train_steps=args.train_steps, lr=args.lr, coord_widths=coord_w,
                   coord_depths=coord_d, branch_hooks=args.branch_hooks, progress=not args.quiet)


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if args.list:
        print(listing())
        return 0
    import os

    import torch

    # Many small batched matmuls: one intra-op thread avoids contention (as in python -m verify).
    torch.set_num_threads(int(os.environ.get("TORCH_NUM_THREADS", "1")))
    try:
        opts = options_from(args)
        _writable_dir(args.out, "--out")
        json_path = None
        if args.json not in (None, "-"):
            json_path = Path(args.json)
            if json_path.is_dir():
                raise ContractError(f"--json {json_path} is a folder; give a file path")
            _writable_dir(json_path.parent if str(json_path.parent) else Path("."), "--json folder")
        result = run(opts)
    except (ContractError, ValueError) as exc:
        if args.traceback:
            raise
        ap.exit(2, f"{PROG}: error: {' '.join(str(exc).split())}\n")
    except Exception as exc:  # a bug of ours or of the user's code that no check caught: still one line
        if args.traceback:
            raise
        ap.exit(2, f"{PROG}: error: unexpected {type(exc).__name__}: {' '.join(str(exc).split())} (rerun with "
                   f"--traceback)\n")
    text = json.dumps(result, indent=1, ensure_ascii=False, default=float)
    (args.out / "check.json").write_text(text)
    if json_path is not None:
        json_path.write_text(text)
    draw(result, args.out / "check.png")
    written = [args.out / "check.json", args.out / "check.png"]
    if result["coord_check"]:
        draw_coord(result, args.out / "coord.png")
        written.append(args.out / "coord.png")
    if args.json == "-":
        print(text)
        return 0
    for line in lines(result):
        print(line)
    print("wrote " + ", ".join(str(p) for p in written + ([json_path] if json_path else [])))
    return 0
