"""Hostile input to the transfer layer: export files and migration checkpoints nested too deeply
for the JSON parser end in the transfer layer's own errors, naming the line or file, never in a
``RecursionError`` (issue 14, item 12); so does a command line ``--option`` value.

The command line is driven in-process with click's runner, as ``test_cli.py`` does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sessionstore import ExportFormatError, TransferError
from sessionstore.cli import cli
from sessionstore.transfer import EXPORT_FORMAT, ExportReader, MigrationCheckpoint

HEADER = json.dumps({"type": "header", "format": EXPORT_FORMAT, "version": 1}) + "\n"
END = '{"type":"end","sessions":0}\n'
DEEP = 100_000
"""Far deeper than the interpreter's recursion limit."""


def nested_line(depth: int = DEEP) -> str:
    return "[" * depth + "]" * depth + "\n"


def nested_object_line(depth: int = DEEP) -> str:
    """A session line whose ``streams`` value nests ``depth`` lists deep."""
    return '{"type":"session","id":"s","streams":' + "[" * depth + "]" * depth + "}\n"


def invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, prog_name="sessionstore")


@pytest.mark.parametrize(
    ("lines", "line_number"),
    [
        ([nested_line()], 1),
        ([HEADER, nested_line(), END], 2),
        ([HEADER, nested_object_line(), END], 2),
        ([HEADER, "\n", '{"a":' * DEEP + "1" + "}" * DEEP + "\n", END], 3),
    ],
    ids=["header", "list-line", "nested-value", "nested-objects"],
)
def test_export_reader_refuses_deep_nesting_naming_the_line(
    lines: list[str], line_number: int
) -> None:
    with pytest.raises(ExportFormatError) as info:
        list(ExportReader(lines, name="deep.jsonl"))
    message = str(info.value)
    assert f"deep.jsonl, line {line_number}:" in message
    assert "nest" in message
    assert "Recursion" not in message


@pytest.mark.parametrize("from_stdin", [False, True], ids=["file", "stdin"])
def test_cli_import_of_a_deeply_nested_line_names_the_line(
    tmp_path: Path, from_stdin: bool
) -> None:
    text = HEADER + nested_line() + END
    target = f"sqlite:///{tmp_path / 'target.db'}"
    if from_stdin:
        result = invoke("import", "-", "-s", target, input=text)
        name = "<stdin>"
    else:
        damaged = tmp_path / "deep.jsonl"
        damaged.write_text(text, encoding="utf-8")
        result = invoke("import", str(damaged), "-s", target)
        name = str(damaged)
    assert result.exit_code == 1, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert "internal error" not in result.stderr
    assert "RecursionError" not in result.stderr
    assert f"error: {name}, line 2: " in result.stderr


def test_migration_checkpoint_deeply_nested_is_a_transfer_error(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.json"
    path.write_text(nested_line(), encoding="utf-8")
    checkpoint = MigrationCheckpoint(
        path, source="memory", source_namespace="a", target="memory", target_namespace="b"
    )
    with pytest.raises(TransferError, match="is not a sessionstore migration checkpoint"):
        checkpoint.load()


def test_a_cli_option_nested_too_deeply_for_json_is_taken_as_text() -> None:
    # The same parser reads --option values: one that does not parse as JSON is a string.
    result = invoke("count", "-s", "memory", "-o", "busy=" + "[" * DEEP)
    assert result.exit_code == 1, result.output
    assert "internal error" not in result.stderr
    assert "RecursionError" not in result.stderr
    assert "busy" in result.stderr
