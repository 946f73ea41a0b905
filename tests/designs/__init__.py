"""Block designs written from scratch the way a new user of ``python -m verify.check`` writes them.

Plain torch modules (``nn.Linear``, ``nn.LayerNorm``, default float32 initialisation from torch's global generator)
with a ``make_block(d, seed, ...)`` factory, or the batched protocol where a test needs it. They are the test
designs of issue 14 and issue 10 (ReZero, Sandwich-LN, nGPT-style, deliberately unstable and vanishing blocks,
a batched block that shares its weights across instances, and factories that break the contract); the shipped
examples live in ``verify/check/designs``. Import path in tests: ``designs.<name>:make_block`` with ``tests/`` on
PYTHONPATH.
"""
