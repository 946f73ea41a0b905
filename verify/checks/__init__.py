"""Registered theorem checks, one module per catalogue group (see verify.checks.registry.CHECK_MODULES)."""
