"""The soak's --seeded-only selection (tests/conftest.py ``is_seeded``, README "Soak"): which tests a round keeps."""
from __future__ import annotations

import types

from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import is_seeded


@given(st.integers())
def _a_given_test(n):
    pass


def _plain_test():
    pass


def _item(obj, fixturenames=(), seed=None, marked=False):
    callspec = types.SimpleNamespace(params={} if seed is None else {"seed": seed})
    return types.SimpleNamespace(obj=obj, fixturenames=list(fixturenames), callspec=callspec,
                                 get_closest_marker=lambda name: object() if marked and name == "seeded" else None)


def test_seeded_only_keeps_exactly_the_seed_dependent_tests():
    assert is_seeded(_item(_a_given_test))                       # hypothesis: --hypothesis-seed reaches it
    assert is_seeded(_item(_plain_test, ["ctx"]))                # the registered checks' Context(seed=SOAK_SEED)
    assert is_seeded(_item(_plain_test, ["zoo", "ctx"], seed=None))  # the [ctx] case of a regression
    assert is_seeded(_item(_plain_test, marked=True))            # @pytest.mark.seeded
    # Deselected: fixed seeds only — no ctx, or ctx read for level/device beside an explicit integer seed.
    assert not is_seeded(_item(_plain_test))
    assert not is_seeded(_item(_plain_test, ["tmp_path"]))
    assert not is_seeded(_item(_plain_test, ["ctx"], seed=3057755704))
