"""End to end: answers to server-to-client requests across instances (issue 15, item 10).

Two instances of ``mcp_server_app.py`` (separate processes, the official SDK 2.x or 1.x wrapped by
``sessionstore.mcp``) share a SQLite file, a real redis-server or (SDK 2.x) a PostgreSQL database,
behind the round-robin balancer (``balancer.py``: each HTTP request to the next instance). The
SDK's own client (``mcp_client.py``) calls the ``ask`` tool, whose server asks the client
(elicitation or sampling) on the call's stream; the client's callback answers with a POST that
the balancer may hand to the other instance. The answer must reach the tool, whichever instance
gets it:

- in turn: several asks with every request to the next instance;
- across, for sure: the call held on one instance, the answer sent to the other (both ways);
- the asker killed before the answer: the call ends with the layer's explicit ``instance-lost``
  error within the heartbeat TTL (the client never hangs), the answer is accepted (202) and
  dropped, and the session then works on the other instance.

The plain SDK (no layer) behind the same balancer loses the answer, so these tests have teeth.
"""

from __future__ import annotations

import time

import pytest
from balancer import Balancer
from mcp_harness import CallOutcome, Cluster, ClusterFactory, McpClient, ServerInstance

HEARTBEAT_INTERVAL = 0.5
HEARTBEAT_TTL = 2.0
RETRY = 0.3  # the SSE `retry:` the instances send, seconds
SLACK = 3.0  # for the machine: process scheduling, store round trips
LIMIT = 20.0  # the client's read timeout of a call: a lost answer shows as a timeout error
PLAIN_LIMIT = 4.0
INSTANCE_OPTIONS = [
    f"--heartbeat-interval={HEARTBEAT_INTERVAL}",
    f"--heartbeat-ttl={HEARTBEAT_TTL}",
    "--graceful=2",
]
ANSWERED = {"elicitation": "yes-{label}", "sampling": "sampled-{label}"}


def fleet(cluster: Cluster) -> tuple[ServerInstance, ServerInstance, Balancer, McpClient]:
    a, b = cluster.start_instances("A", "B", options=INSTANCE_OPTIONS)
    balancer = Balancer([a.port, b.port]).start()
    try:
        client = cluster.start_client(f"{balancer.url}/mcp", "alice-token")
    except BaseException:
        balancer.close()
        raise
    return a, b, balancer, client


def ask(
    client: McpClient, label: str, kind: str, *, gate: bool = False, limit: float = LIMIT
) -> None:
    client.send(op="ask", label=label, kind=kind, timeout=limit, gate=gate)


def asked(client: McpClient, label: str) -> None:
    """Wait until the server's request of call ``label`` reached the client's callback."""
    client.next_event(lambda e: e.kind == "asked" and label in e.get("message", ""), LIMIT)


def heard(client: McpClient, label: str, limit: float = LIMIT + 5) -> CallOutcome:
    return client.follow(CallOutcome(label), limit)


def answered_across(
    client: McpClient, balancer: Balancer, asker: ServerInstance, other: ServerInstance, kind: str
) -> None:
    """A call held on ``asker``, its answer sent to ``other``: the tool hears it."""
    label = f"{kind}-{asker.name}-to-{other.name}"
    balancer.set_upstreams([asker.port])
    ask(client, label, kind, gate=True)
    asked(client, label)
    balancer.set_upstreams([other.port])
    routed = len(balancer.requests)
    client.send(op="let")
    outcome = heard(client, label)
    assert outcome.error is None, f"{label}: {outcome.error}"
    assert outcome.result == f"{asker.name} heard {ANSWERED[kind].format(label=label)}"
    # The answer's POST went to the other instance indeed.
    assert other.port in [r.port for r in balancer.requests[routed:] if r.method == "POST"]


# PostgreSQL with SDK 2.x only: the relay is the store's work, the SDK's is the same on each.
@pytest.mark.parametrize(
    ("sdk", "store_kind"),
    [(sdk, store) for sdk in ("sdk2", "sdk1") for store in ("sqlite", "redis")]
    + [("sdk2", "postgres")],
)
def test_answers_reach_the_instance_that_asked(
    make_cluster: ClusterFactory, sdk: str, store_kind: str
) -> None:
    from sessionstore.mcp import INTERRUPTED_ERROR_CODE

    cluster = make_cluster(sdk, store_kind)
    a, b, balancer, client = fleet(cluster)
    try:
        # In turn: every request to the next instance, answers included.
        for n, kind in enumerate(["elicitation", "sampling", "elicitation", "sampling"]):
            label = f"turn{n}"
            ask(client, label, kind)
            outcome = heard(client, label)
            assert outcome.error is None, f"{label}: {outcome.error}"
            assert outcome.result in {
                f"{name} heard {ANSWERED[kind].format(label=label)}" for name in "AB"
            }
        # Across, for sure, both ways.
        answered_across(client, balancer, a, b, "elicitation")
        answered_across(client, balancer, b, a, "sampling")

        # The asker dies before the answer comes: the client must not hang. The call ends with
        # the layer's explicit error; the answer is taken (202) and dropped. SDK 2.x's client
        # reads on while its callback waits: the answer comes after the error, once B knows
        # that A is dead. SDK 1.x's client runs the callback in its read loop: the answer
        # comes first (A not yet known dead), then the error.
        balancer.set_upstreams([a.port])
        ask(client, "orphan", "elicitation", gate=True)
        asked(client, "orphan")
        a.kill()
        killed_at = time.monotonic()
        balancer.set_upstreams([b.port])
        if sdk == "sdk1":
            client.send(op="let")
        outcome = heard(client, "orphan")
        error = outcome.error
        assert error is not None, f"expected the instance-lost error, got {outcome.end}"
        assert error["code"] == INTERRUPTED_ERROR_CODE, error.fields
        waited = error.at - killed_at
        print(f"{sdk} {store_kind}: the error came {waited:.2f} s after the kill")
        assert waited < HEARTBEAT_TTL + RETRY + SLACK
        if sdk == "sdk2":
            client.send(op="let")
        answers = [e for e in client.events if e.kind == "http" and e.at > killed_at]
        answers = [e for e in answers if e["method"] == "POST"]
        if not answers:
            answers.append(
                client.next_event(lambda e: e.kind == "http" and e["method"] == "POST", LIMIT)
            )
        assert [e["status"] for e in answers] == [202], [e.fields for e in answers]
        # The session lives on, on B.
        ask(client, "after", "sampling")
        after = heard(client, "after")
        assert after.result == "B heard sampled-after", after.end
    finally:
        balancer.close()


def test_the_plain_sdk_loses_answers_sent_to_the_other_instance(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster("sdk2", "sqlite", plain=True)
    a, b = cluster.start_instances("A", "B", options=INSTANCE_OPTIONS)
    balancer = Balancer([a.port]).start()  # one session needs one instance without the layer
    try:
        client = cluster.start_client(f"{balancer.url}/mcp", "alice-token")
        ask(client, "lost", "elicitation", gate=True, limit=PLAIN_LIMIT)
        asked(client, "lost")
        balancer.set_upstreams([b.port])
        client.send(op="let")
        outcome = heard(client, "lost", PLAIN_LIMIT + 10)
        assert outcome.result is None, f"the plain SDK got the answer: {outcome.result}"
    finally:
        balancer.close()
