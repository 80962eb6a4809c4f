"""The error classes: one tree under SessionStoreError, documented in the errors module."""

from __future__ import annotations

import re

import pytest

import sessionstore
from sessionstore import errors

EXPORTED_ERRORS = {
    name: value
    for name in sessionstore.__all__
    if isinstance(value := getattr(sessionstore, name), type) and issubclass(value, BaseException)
}


def test_every_exported_error_is_listed_in_the_errors_module() -> None:
    assert set(EXPORTED_ERRORS) == set(errors.__all__)
    assert len(EXPORTED_ERRORS) >= 14


@pytest.mark.parametrize("name", sorted(EXPORTED_ERRORS))
def test_every_exported_error_derives_from_session_store_error(name: str) -> None:
    assert issubclass(EXPORTED_ERRORS[name], sessionstore.SessionStoreError)
    assert getattr(errors, name) is EXPORTED_ERRORS[name]


@pytest.mark.parametrize(
    "cls",
    [
        sessionstore.InvalidSessionError,
        sessionstore.ConfigurationError,
        sessionstore.UnknownBackendError,
        sessionstore.BackendLoadError,
    ],
)
def test_argument_errors_are_value_errors(cls: type[Exception]) -> None:
    assert issubclass(cls, ValueError)


def test_missing_and_conflict_errors_are_not_value_errors() -> None:
    assert not issubclass(sessionstore.SessionNotFoundError, ValueError)
    assert not issubclass(sessionstore.ConflictError, ValueError)
    assert issubclass(sessionstore.SessionNotFoundError, LookupError)
    assert issubclass(sessionstore.EventNotFoundError, LookupError)


def _docstring_tree() -> list[tuple[int, str]]:
    """(column, class name) for each line of the tree in the errors module docstring."""
    doc = errors.__doc__
    assert doc is not None
    tree = doc.split("The tree::", 1)[1].split("\n\n", 2)[1]
    nodes = []
    for line in tree.splitlines():
        match = re.search(r"([A-Z][A-Za-z]+Error)\b", line)
        if match and not line[: match.start()].strip(" │├└─"):
            nodes.append((match.start(), match.group(1)))
    return nodes


def test_docstring_tree_names_every_error_class() -> None:
    names = [name for _, name in _docstring_tree()]
    assert len(names) == len(set(names))
    assert set(names) == set(errors.__all__)


def test_docstring_tree_matches_the_class_hierarchy() -> None:
    nodes = _docstring_tree()
    assert nodes[0] == (nodes[0][0], "SessionStoreError")
    parents: list[tuple[int, str]] = []
    checked = 0
    for column, name in nodes:
        while parents and parents[-1][0] >= column:
            parents.pop()
        if parents:
            parent = getattr(errors, parents[-1][1])
            assert parent in getattr(errors, name).__bases__, (name, parent)
            checked += 1
        parents.append((column, name))
    assert checked == len(nodes) - 1


def test_not_found_and_conflict_name_every_id() -> None:
    missing = sessionstore.SessionNotFoundError("a", "b*")
    assert missing.session_ids == ("a", "b*")
    assert missing.session_id == "a"
    assert str(missing) == "sessions not found: 'a', 'b*'"
    assert str(sessionstore.SessionNotFoundError("x")) == "session not found: 'x'"
    conflict = sessionstore.ConflictError("s1", "s2", detail="gave up")
    assert conflict.session_ids == ("s1", "s2")
    assert "'s1', 's2'" in str(conflict)
    assert str(conflict).endswith("(gave up)")


def test_event_not_found_says_whether_evicted() -> None:
    evicted = sessionstore.EventNotFoundError("7-1", evicted=True)
    unknown = sessionstore.EventNotFoundError("7-1")
    assert evicted.evicted
    assert not unknown.evicted
    assert "evicted" in str(evicted)
    assert "unknown" in str(unknown)


def test_corrupt_record_and_backend_error_name_where() -> None:
    corrupt = sessionstore.CorruptRecordError("abc", "truncated")
    assert (corrupt.session_id, corrupt.reason) == ("abc", "truncated")
    assert "'abc'" in str(corrupt)
    assert "truncated" in str(corrupt)
    failure = sessionstore.BackendError("redis", "session_get", KeyError("k"))
    assert (failure.backend, failure.hook) == ("redis", "session_get")
    assert str(failure) == "backend 'redis' failed in hook 'session_get': KeyError: 'k'"


def test_unknown_backend_error_lists_installed_sorted() -> None:
    error = sessionstore.UnknownBackendError("x", ["redis", "memory"], "install it")
    assert error.installed == ("memory", "redis")
    assert "installed: memory, redis" in str(error)
    assert "installed: none" in str(sessionstore.UnknownBackendError("x", [], "hint"))
