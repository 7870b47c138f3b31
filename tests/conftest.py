"""Fixtures for Kiln's pytest suites (the helper itself is support/kiln_testing.py)."""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "support"))
from kiln_testing import SideBySide  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--kiln", default=os.environ.get("KILN", "build/bin/kiln"), help="the kiln binary under test")


@pytest.fixture(scope="session")
def kiln(request):
    return os.path.abspath(request.config.getoption("--kiln"))


VECTORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vectors")


@pytest.fixture(scope="session")
def vectors():
    """The directory of golden values from real Nix (tests/vectors)."""
    return VECTORS


@pytest.fixture(scope="session")
def manifest():
    with open(os.path.join(VECTORS, "manifest.json")) as f:
        return json.load(f)


@pytest.fixture
def both(kiln):
    """A Kiln store and a Nix 2.8 store side by side, removed afterwards."""
    s = SideBySide(kiln)
    yield s
    s.close()
