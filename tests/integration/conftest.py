"""One real broker per test session (per xdist worker); a fresh topic and group per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connector.localbroker import LocalBroker


@pytest.fixture(scope="session")
def broker() -> Iterator[LocalBroker]:
    with LocalBroker() as b:
        yield b


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
