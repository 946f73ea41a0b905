"""Closed forms of the stability theory: pure mathematics, no torch.

Every public function names its theorem id (N, F, B, S, U, X of the catalogue), its assumptions, its
provenance (``paper claim K#, our statement`` or ``neighbour: <paper>``) and its domain in its docstring,
and raises ``ValueError`` naming the offending parameter outside that domain. Functions take floats and
numpy arrays; where high precision matters they also accept mpmath numbers.
"""
