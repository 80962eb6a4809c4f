"""The pytest plugin (``pytest11`` entry point): options and the ``sessionstore_target`` fixture.

Run the whole contract against a backend::

    pytest --pyargs sessionstore_contract --sessionstore-backend NAME_OR_URL
    pytest --pyargs sessionstore_contract --sessionstore-factory package.module:factory

``--sessionstore-option key=value`` (repeatable) passes a backend option to every ``open_store``;
values are parsed as JSON when they can be (``max_sessions=100``), else kept as strings.

``--sessionstore-middleware module:callable`` (repeatable) runs the whole suite through
middleware: each callable is called with no arguments for every store the suite opens, and the
results are given to ``open_store(..., middleware=[...])`` in the order named (the last is the
outermost). For example, encrypted and compressed, with the keys in
``SESSIONSTORE_ENCRYPTION_KEYS``::

    pytest --pyargs sessionstore_contract --sessionstore-backend sqlite:///x.db \\
        --sessionstore-middleware sessionstore.encryption:EncryptionMiddleware.from_environment \\
        --sessionstore-middleware sessionstore.compression:CompressionMiddleware

Two Hypothesis profiles (``--hypothesis-profile NAME``); without one, Hypothesis's default runs
(100 examples per randomized test), which is what a backend's CI should use:

- ``sessionstore-quick`` does not shrink failures and keeps no example database: a fast yes/no
  on a broken backend (300 examples per randomized test), not for debugging one.
- ``sessionstore-fast`` runs every deterministic test in full (each promise and each limit has
  one) and each randomized test (round trips, the state machine) on 10 examples, keeping no
  example database: "does this backend still pass", in a few seconds less per randomized test,
  for a repository's quick runs. It explores far less; keep a default-profile run too (this
  repository's ``make long`` runs one on the example backend).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import Phase, settings

from .target import ContractTarget

__all__ = ["pytest_addoption", "sessionstore_target"]


settings.register_profile(
    "sessionstore-quick",
    max_examples=300,
    phases=[Phase.explicit, Phase.generate],
    database=None,
)
settings.register_profile("sessionstore-fast", max_examples=10, database=None)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sessionstore", "sessionstore contract suite")
    group.addoption(
        "--sessionstore-backend",
        metavar="NAME_OR_URL",
        help="backend under test, as open_store() takes it: memory, sqlite:///x.db, redis://...",
    )
    group.addoption(
        "--sessionstore-factory",
        metavar="MODULE:CALLABLE",
        help="backend factory under test, for a backend not installed through an entry point",
    )
    group.addoption(
        "--sessionstore-option",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="backend option passed to every open_store (repeatable)",
    )
    group.addoption(
        "--sessionstore-middleware",
        metavar="MODULE:CALLABLE",
        action="append",
        default=[],
        help="middleware every store of the suite is opened with: the callable's result, "
        "called with no arguments (repeatable; the last is the outermost)",
    )


def _options(pairs: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.isidentifier():
            raise pytest.UsageError(f"--sessionstore-option {pair!r}: expected KEY=VALUE")
        try:
            options[key] = json.loads(raw)
        except ValueError:
            options[key] = raw
    return options


@pytest.fixture(scope="session")
def sessionstore_target(pytestconfig: pytest.Config) -> ContractTarget:
    """The backend named on the command line. Override this fixture to test another."""
    backend = pytestconfig.getoption("sessionstore_backend")
    factory = pytestconfig.getoption("sessionstore_factory")
    options = _options(pytestconfig.getoption("sessionstore_option"))
    middleware = pytestconfig.getoption("sessionstore_middleware")
    if backend and factory:
        raise pytest.UsageError("give --sessionstore-backend or --sessionstore-factory, not both")
    if factory:
        return ContractTarget.from_factory(factory, middleware=middleware, **options)
    if backend:
        return ContractTarget.from_spec(backend, middleware=middleware, **options)
    raise pytest.UsageError(
        "the sessionstore contract suite needs a backend: "
        "--sessionstore-backend NAME_OR_URL or --sessionstore-factory MODULE:CALLABLE"
    )
