"""The architecture sanity check (paper claim K8): ``python -m verify.check``.

``verify.check.core`` measures a block design's forward growth and gradient norms at initialisation (and after an
optional short training), fits its growth regime, finds the nearest zoo placement and applies the stability
criterion; ``verify.check.designs`` holds example designs written the way a user would write them.
"""
from verify.check.core import ContractError, Options, main, run

__all__ = ["ContractError", "Options", "main", "run"]
