"""End to end: a tool's per-session state across two instances, with the SDK's own client
(issue 15, item 5).

Two instances of ``mcp_server_app.py`` (separate processes, the official SDK 2.x or 1.x wrapped by
``sessionstore.mcp``, sessions idle-expiring after ``TTL`` seconds) share a SQLite file, a real
redis-server or (SDK 2.x) a PostgreSQL database. ``state_client.py``, the SDK's own client, runs
sessions whose tool calls go to a chosen instance: ``remember(note)`` on one, ``recall()`` on the
other, which must read the note back (the issue saw ``None`` on one instance and ``'hello'`` on
the other) and see the session id the client has. Then, in the store: the note is in the
session's record, gone once the client deleted the session, and gone once an idle session expired.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from mcp_harness import Cluster, ClusterFactory

from sessionstore import open_store
from sessionstore.mcp import SessionEndedError, SessionHandle

HERE = Path(__file__).resolve().parent
CLIENT = HERE / "state_client.py"
TTL = 6.0  # the instances' session ttl: short, so the test sees a session expire
CLIENT_TIMEOUT = 120.0
EXPIRY_SLACK = 10.0  # past the ttl, for a loaded machine

SDKS = ["sdk2", "sdk1"]
STORES = ["sqlite", "redis"]
# PostgreSQL with SDK 2.x only: the note's life is the store's work, the SDK's is the same on each.
MATRIX = [(sdk, store) for sdk in SDKS for store in STORES] + [("sdk2", "postgres")]

PLAN = [
    # 0: a note, then left idle until it expires
    {"end": False, "calls": [["A", "remember", {"note": "idle"}], ["B", "recall", {}]]},
    # 1: written on one instance, read on the other, changed there, read back on the first
    {
        "end": False,
        "calls": [
            ["A", "remember", {"note": "hello"}],
            ["B", "recall", {}],
            ["A", "recall", {}],
            ["B", "remember", {"note": "hello again"}],
            ["A", "recall", {}],
        ],
    },
    # 2: another session of the same user has no note
    {"end": False, "calls": [["B", "recall", {}]]},
    # 3: ended by its client (DELETE)
    {"end": True, "calls": [["B", "remember", {"note": "bye"}], ["A", "recall", {}]]},
]


def run_plan(cluster: Cluster, ports: dict[str, int]) -> tuple[list[str], list[list[Any]]]:
    """Run ``PLAN`` with the SDK's client; the session ids and each session's results (the
    decoded JSON of a ``recall``, the text of anything else)."""
    done = subprocess.run(
        [
            str(cluster.python),
            str(CLIENT),
            "--token=alice-token",
            f"--instances={json.dumps(ports)}",
            f"--plan={json.dumps(PLAN)}",
        ],
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
        check=False,
    )
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr[-5000:]}"
    assert events[-1]["event"] == "bye", events
    sessions = [e["id"] for e in events if e["event"] == "session"]
    results: list[list[Any]] = [[] for _ in PLAN]
    for event in events:
        if event["event"] == "result":
            assert not event["is_error"], event
            call = PLAN[event["index"]]["calls"][event["call"]]
            text = event["text"]
            results[event["index"]].append(json.loads(text) if call[1] == "recall" else text)
    return sessions, results


async def state_of(store_spec: str, namespace: str, session_id: str) -> dict[str, Any] | None:
    """The session's state as the store has it; ``None`` once the session ended."""
    async with open_store(store_spec, namespace=namespace) as store:
        try:
            return await SessionHandle(store, session_id).state()
        except SessionEndedError:
            return None


@pytest.mark.parametrize(("sdk", "store_kind"), MATRIX)
def test_a_tools_note_roams_and_ends_with_its_session(
    make_cluster: ClusterFactory, sdk: str, store_kind: str
) -> None:
    cluster = make_cluster(sdk, store_kind)
    a, b = cluster.start_instances("A", "B", options=[f"--ttl={TTL}"])
    sessions, results = run_plan(cluster, {"A": a.port, "B": b.port})
    assert len(sessions) == len(PLAN)
    assert len(set(sessions)) == len(PLAN)
    idle, roaming, other, ended = sessions

    def recalled(note: str | None, instance: str, session: str) -> dict[str, Any]:
        return {"note": note, "instance": instance, "session": session}

    assert results[0] == ["noted on A", recalled("idle", "B", idle)]
    assert results[1] == [
        "noted on A",
        recalled("hello", "B", roaming),  # the same note, and the client's session id
        recalled("hello", "A", roaming),
        "noted on B",
        recalled("hello again", "A", roaming),
    ]
    assert results[2] == [recalled(None, "B", other)]
    assert results[3] == ["noted on B", recalled("bye", "A", ended)]

    store, namespace = cluster.store, cluster.namespace
    # The note is in the session's record; the ended session's record is gone with its note.
    assert asyncio.run(state_of(store, namespace, roaming)) == {"note": "hello again"}
    assert asyncio.run(state_of(store, namespace, ended)) is None
    # The idle session expires, its note with it.
    deadline = time.monotonic() + TTL + EXPIRY_SLACK
    while asyncio.run(state_of(store, namespace, idle)) is not None:
        assert time.monotonic() < deadline, "the idle session's state outlived its ttl"
        time.sleep(0.25)
