"""Shared test set-up: hypothesis profiles, the check context, devices, and mpmath precision hygiene."""
from __future__ import annotations

import os

import mpmath
import pytest
from hypothesis import HealthCheck, settings

from verify.checks.registry import Context
from verify.engine.devices import available_devices
from verify.engine.strategies import load_profile_from_env

# The soak profile (.ci/soak; README "Mutation and soak"): random, not derandomized, so every round draws fresh
# examples from the seed pytest is given (--hypothesis-seed); the registered checks' own sampler takes SOAK_SEED.
settings.register_profile("soak", derandomize=False, max_examples=20, deadline=None, database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PROFILE = load_profile_from_env()
SOAK_SEED = os.environ.get("SOAK_SEED") if PROFILE == "soak" else None


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run the slow tier as well")
    parser.addoption("--level", choices=("quick", "full"), default="quick",
                     help="size of the registered checks the tests run (quick: the default tier)")
    parser.addoption("--seeded-only", action="store_true", default=False,
                     help="soak rounds (.ci/soak passes it): deselect the tests whose outcome cannot depend on the "
                          "round's seed — neither hypothesis @given nor the ctx fixture nor @pytest.mark.seeded")


def is_seeded(item) -> bool:
    """Whether a test's outcome can depend on a soak round's seed: a hypothesis @given test (--hypothesis-seed),
    a test using the ``ctx`` fixture, directly or through another fixture (SOAK_SEED), or one marked ``seeded``
    (it reads the round's seed some other way). A ctx test parametrised with an explicit integer ``seed`` (the kept
    soak regressions: ``Context(level=ctx.level, seed=seed, device=ctx.device)``) reads only ctx's level and
    device, so it is fixed too. Every other test draws only fixed seeds (README "Soak")."""
    if item.get_closest_marker("seeded") is not None or getattr(getattr(item, "obj", None), "is_hypothesis_test",
                                                                 False):
        return True
    params = getattr(getattr(item, "callspec", None), "params", {})
    return "ctx" in item.fixturenames and not isinstance(params.get("seed"), int)


def pytest_report_header(config):
    soak = f" (soak seed {SOAK_SEED})" if SOAK_SEED is not None else ""
    return f"hypothesis profile: {PROFILE}{soak}; check level: {config.getoption('--level')}; devices: {available_devices()}"


def pytest_collection_modifyitems(config, items):
    if config.getoption("--seeded-only"):
        keep = [item for item in items if is_seeded(item)]
        config.hook.pytest_deselected(items=[item for item in items if not is_seeded(item)])
        items[:] = keep
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow tier: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def ctx(request) -> Context:
    """The check context every registered check runs under in the tests (CPU, fixed seed)."""
    if SOAK_SEED is not None:  # a soak round: the checks draw from the round's seed, not the fixed default
        return Context(level=request.config.getoption("--level"), seed=int(SOAK_SEED))
    return Context(level=request.config.getoption("--level"))


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request) -> str:
    """Each device the checks should run on; CUDA is skipped, not failed, where it is absent."""
    if request.param not in available_devices():
        pytest.skip("CUDA is not available here")
    return request.param


@pytest.fixture(autouse=True)
def _restore_mpmath_precision():
    """mpmath's precision is global: a test that changes it must not leak into the next one."""
    dps = mpmath.mp.dps
    yield
    mpmath.mp.dps = dps


def pytest_configure(config):
    import torch

    config.addinivalue_line("markers", "seeded: the outcome depends on a soak round's seed other than through "
                                       "hypothesis or ctx (kept by --seeded-only)")

    # One intra-op thread per test process: the suite runs two xdist workers on two cores, and the checks' batched
    # matmuls are small, so a second thread only adds contention (measured: 5-9x slower on a loaded machine).
    # TORCH_NUM_THREADS overrides it for a single-process run that wants both cores.
    torch.set_num_threads(int(os.environ.get("TORCH_NUM_THREADS", "1")))


@pytest.fixture(scope="session")
def atlas():
    """The committed cpu atlas (figures/atlas.json): its record and its runs without the split label (the atlas
    tests recompute the split). Skips when the figure has not been generated."""
    import json

    from verify.atlas import ATLAS_JSON

    if not ATLAS_JSON.is_file():
        pytest.skip("figures/atlas.json not generated")
    data = json.loads(ATLAS_JSON.read_text())
    return data, [{k: v for k, v in r.items() if k != "split"} for r in data["runs"]]
