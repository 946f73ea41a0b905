"""Example block designs that are *not* in the zoo, written the way a user of ``python -m verify.check`` would.

Each module exposes a factory ``make_block(d, n_instances, seed) -> torch.nn.Module`` whose forward maps hidden
states of shape (n_instances, n, d) to the same shape, with independent weights per instance. They are plugged into
the sanity check through the import path (``verify.check.designs.dyt:make_block``), exactly like a user's own design.
"""
