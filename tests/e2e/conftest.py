"""The opt-in real-OpenClaw tests share one way of finding OpenClaw, skipping with the reason when it is absent."""

from __future__ import annotations

import pytest

from tests.e2e.test_openclaw_real import OpenClaw, find_openclaw


@pytest.fixture(scope="module")
def openclaw() -> OpenClaw:
    found = find_openclaw()
    if isinstance(found, str):
        pytest.skip(found)
    return found
