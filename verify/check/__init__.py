"""The architecture sanity check (paper claim K8): ``python -m verify.check``.

``core`` runs it (``Options``, ``run``); the parts, one module each: ``contract`` (loading and calling a factory),
``design`` and ``layers`` (blocks made into I independent instances), ``library`` (``--module`` blocks),
``measure``, ``regime``, ``placement`` (recognised from invariances), ``expected`` (the theorem's curve and
verdict), ``residual`` (the residual-contribution identity), ``criterion``, ``train``, ``report`` (printout and
plots) and ``cli``. ``designs`` holds example designs written the way a user would write them.
"""
from verify.check.cli import main
from verify.check.contract import ContractError
from verify.check.core import Options, run

__all__ = ["ContractError", "Options", "main", "run"]
