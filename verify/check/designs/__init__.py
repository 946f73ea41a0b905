"""Example block designs that are *not* in the zoo, written the way a user of ``python -m verify.check`` would.

``dyt`` and ``b2t`` use the batched protocol, ``make_block(d, n_instances, seed)`` over a leading instance dimension;
the 2024–2026 gallery (``ngpt``, ``hybridnorm``, ``rezero``, ``residual_multiplier``, ``completep``,
``hyperconnections``, ``gpas``, ``gemma``; chapter G, checks X7–X14) uses the plain protocol,
``make_block(d, seed, ...)`` returning an ordinary single-model ``nn.Module``. They are plugged into the sanity
check through the import path (``verify.check.designs.ngpt:make_block``), exactly like a user's own design;
``_parts`` holds the pieces the gallery shares.
"""
