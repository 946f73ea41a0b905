"""Registered theorem checks, one module per catalogue group (see verify.registry.CHECK_MODULES)."""
