"""End to end, real processes, SDK 2.x and 1.x (issue 15, items 1 and 2): the SDK's own auth and
``principal=`` with two users, and hostile initialize bodies, each against the plain SDK.

- **Principals.** Two instances of ``mcp_server_app.py --auth sdk`` (the SDK's own
  ``token_verifier`` and ``AuthSettings``; FastMCP's under SDK 1.x) or ``--auth principal``
  (``McpSessions(principal=...)``, no authentication), and one plain SDK instance with the same
  authentication. Bob presenting Alice's session id gets exactly the plain SDK's 404 on both
  instances, POST and resuming GET alike; Alice's session works on both. (``--auth outer``, the
  default, is ``test_mcp_e2e.py::test_other_principal_gets_not_found``.)
- **Hostile initialize bodies.** The same bodies (NaN, Infinity, integers beyond 64 bits, deep
  nesting, lone surrogates, duplicate keys, a BOM, UTF-16, invalid UTF-8, other top levels,
  batches, wrong types...) go to a plain SDK instance and to a wrapped one: the same status and
  JSON-RPC error code, never 500 (where SDK 1.x alone answers 500, to 100,000-deep nesting, the
  layer answers SDK 2.x's 400 parse error). A session so opened is restored on the other
  instance from the very bytes the client sent.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx2
import pytest
from mcp_harness import ClusterFactory, ServerInstance
from test_mcp_e2e import INSTANCE_OPTIONS, SDKS

HANDSHAKE = "2025-06-18"
ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
PARAMS = '{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"h","version":"1"}'
KEPT_LIMIT = 64 * 1024  # McpSessions' default max_initialize_bytes


def initialize_with(extra: str, *, request_id: str = "1") -> bytes:
    """An initialize request whose params carry ``extra`` (raw JSON text) as ``"x"``."""
    text = f'{{"jsonrpc":"2.0","id":{request_id},"method":"initialize","params":{PARAMS}'
    return (text + (f',"x":{extra}' if extra else "") + "}}").encode("utf-8", "surrogatepass")


def hostile_bodies() -> dict[str, bytes]:
    plain = initialize_with("")
    return {
        "control": plain,
        "nan": initialize_with("NaN"),
        "infinity": initialize_with("Infinity"),
        "minus-infinity": initialize_with("-Infinity"),
        "int-beyond-64-bits": initialize_with("9" * 40),
        "negative-int-beyond-64-bits": initialize_with("-" + "9" * 40),
        "id-beyond-64-bits": initialize_with("", request_id="9" * 40),
        "huge-float": initialize_with("1e999"),
        "tiny-float": initialize_with("1e-999"),
        "long-float": initialize_with("0." + "1" * 5000),
        "40-deep": initialize_with("[" * 40 + "]" * 40),
        "40-deep-objects": initialize_with('{"a":' * 40 + "1" + "}" * 40),
        "100000-deep": initialize_with("[" * 100_000 + "]" * 100_000),
        "lone-surrogate": initialize_with('"\\ud800"'),
        "lone-low-surrogate": initialize_with('"\\udc00x"'),
        "raw-surrogate-bytes": initialize_with('"\ud800"'),
        "duplicate-keys": plain.replace(b'"id":1', b'"id":1,"id":2'),
        "duplicate-method": plain.replace(
            b'"method":"initialize"', b'"method":"x","method":"initialize"'
        ),
        "bom": b"\xef\xbb\xbf" + plain,
        "utf-16": plain.decode().encode("utf-16"),
        "invalid-utf-8": initialize_with('"\xff\xfe"').replace(b"\xc3\xbf\xc3\xbe", b"\xff\xfe"),
        "nul-in-string": initialize_with('"\\u0000"'),
        "empty": b"",
        "whitespace": b"  \n ",
        "null": b"null",
        "number": b"1",
        "string": b'"initialize"',
        "batch": b"[" + plain + b"]",
        "batch-of-two": b"[" + plain + b"," + plain + b"]",
        "params-list": b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":[1]}',
        "params-string": b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":"x"}',
        "params-null": b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":null}',
        "no-params": b'{"jsonrpc":"2.0","id":1,"method":"initialize"}',
        "capabilities-string": plain.replace(b'"capabilities":{}', b'"capabilities":"x"'),
        "version-number": plain.replace(b'"protocolVersion":"2025-06-18"', b'"protocolVersion":5'),
        "method-number": plain.replace(b'"method":"initialize"', b'"method":5'),
        "jsonrpc-1": plain.replace(b'"jsonrpc":"2.0"', b'"jsonrpc":"1.0"'),
        "id-null": initialize_with("", request_id="null"),
        "id-true": initialize_with("", request_id="true"),
        "id-float": initialize_with("", request_id="1.5"),
        "id-object": initialize_with("", request_id='{"a":1}'),
        "id-long-string": initialize_with("", request_id='"' + "i" * 2000 + '"'),
        "trailing-garbage": plain + b"}",
        "truncated": plain[:-3],
    }


def first_answer(response: httpx2.Response) -> dict[str, Any] | None:
    """The JSON-RPC message of a JSON body, or the first one on an SSE stream."""
    text = response.text
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for block in text.replace("\r\n", "\n").split("\n\n"):
            data = "\n".join(
                line[5:].strip() for line in block.split("\n") if line.startswith("data:")
            )
            if data:
                found: dict[str, Any] = json.loads(data)
                return found
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def outcome(response: httpx2.Response) -> tuple[int, str | int | None]:
    """What must agree: the status, and the JSON-RPC error code (or "result")."""
    answer = first_answer(response) or {}
    if "result" in answer:
        return response.status_code, "result"
    error = answer.get("error")
    return response.status_code, error.get("code") if isinstance(error, dict) else None


@pytest.mark.parametrize("sdk", SDKS)
def test_hostile_initialize_bodies_answer_as_the_plain_sdk(
    make_cluster: ClusterFactory, sdk: str
) -> None:
    wrapped = make_cluster(sdk, "sqlite")
    a, b = wrapped.start_instances("A", "B", options=INSTANCE_OPTIONS)
    (plain,) = make_cluster(sdk, "sqlite", plain=True).start_instances("P")
    differences = []
    restored = set()
    with httpx2.Client(timeout=httpx2.Timeout(20.0)) as http:
        for name, body in hostile_bodies().items():
            expected = http.post(plain.url, content=body, headers=ACCEPT)
            got = http.post(a.url, content=body, headers=ACCEPT)
            want = outcome(expected)
            if want[0] == 500:  # SDK 1.x's json.loads on deep nesting or invalid UTF-8
                assert sdk == "sdk1", (name, expected.text)
                want = (400, -32700)  # SDK 2.x's answer
            if outcome(got) != want or got.status_code >= 500:
                differences.append((name, outcome(expected), outcome(got), got.text[:200]))
                continue
            if want != (200, "result"):
                continue
            # Opened on A: B restores it from the kept bytes, and serves it.
            session = got.headers["mcp-session-id"]
            version = first_answer(got)["result"]["protocolVersion"]  # type: ignore[index]
            headers = {**ACCEPT, "mcp-session-id": session, "mcp-protocol-version": version}
            done = http.post(
                b.url,
                json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                headers=headers,
            )
            listed = http.post(
                b.url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=headers
            )
            if (done.status_code, outcome(listed)) != (202, (200, "result")):
                differences.append((name, "restore on B", done.status_code, listed.text[:200]))
            else:
                restored.add(name)
    assert not differences, "\n".join(map(repr, differences))
    # What both SDKs open a session for (the test's teeth: these were stored and replayed).
    assert {
        "control",
        "nan",
        "infinity",
        "int-beyond-64-bits",
        "id-beyond-64-bits",
        "huge-float",
        "40-deep",
        "duplicate-keys",
    } <= restored, restored


@pytest.mark.parametrize("sdk", SDKS)
def test_an_initialize_larger_than_the_layer_keeps_is_refused_clearly(
    make_cluster: ClusterFactory, sdk: str
) -> None:
    """What the plain SDK would take (200,000 empty objects) but the layer will not keep: 413
    with a message saying so; nothing is stored."""
    (a,) = make_cluster(sdk, "sqlite").start_instances("A", options=INSTANCE_OPTIONS)
    body = initialize_with("[" + ",".join(["{}"] * 200_000) + "]")
    with httpx2.Client(timeout=httpx2.Timeout(20.0)) as http:
        refused = http.post(a.url, content=body, headers=ACCEPT)
    assert refused.status_code == 413
    assert refused.json()["error"]["message"] == (
        f"Initialize request too large: {len(body)} bytes (at most {KEPT_LIMIT})"
    )
    assert "mcp-session-id" not in refused.headers


def _list_tools(
    http: httpx2.Client, instance: ServerInstance, token: str, session: str
) -> httpx2.Response:
    headers = {
        **ACCEPT,
        "authorization": f"Bearer {token}",
        "mcp-protocol-version": HANDSHAKE,
        "mcp-session-id": session,
    }
    return http.post(
        instance.url, json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, headers=headers
    )


def _resume(
    http: httpx2.Client, instance: ServerInstance, token: str, session: str
) -> httpx2.Response:
    headers = {
        **ACCEPT,
        "authorization": f"Bearer {token}",
        "mcp-protocol-version": HANDSHAKE,
        "mcp-session-id": session,
        "last-event-id": "A-0.0-1",
    }
    with http.stream("GET", instance.url, headers=headers) as response:
        response.read()
        return response


def _open(http: httpx2.Client, instance: ServerInstance, token: str) -> str:
    headers = {**ACCEPT, "authorization": f"Bearer {token}"}
    opened = http.post(instance.url, content=initialize_with(""), headers=headers)
    assert opened.status_code == 200, opened.text
    session = opened.headers["mcp-session-id"]
    done = http.post(
        instance.url,
        json={"jsonrpc": "2.0", "method": "notifications/initialized"},
        headers={**headers, "mcp-session-id": session, "mcp-protocol-version": HANDSHAKE},
    )
    assert done.status_code == 202, done.text
    return session


@pytest.mark.parametrize("auth", ["sdk", "principal"])
@pytest.mark.parametrize("sdk", SDKS)
def test_another_principal_gets_the_plain_sdk_404(
    make_cluster: ClusterFactory, sdk: str, auth: str
) -> None:
    options = [*INSTANCE_OPTIONS, f"--auth={auth}"]
    a, b = make_cluster(sdk, "sqlite").start_instances("A", "B", options=options)
    (plain,) = make_cluster(sdk, "sqlite", plain=True).start_instances("P", options=options)
    with httpx2.Client(timeout=httpx2.Timeout(20.0, read=3.0)) as http:
        unknown = _list_tools(http, plain, "bob-token", uuid.uuid4().hex)
        assert unknown.status_code == 404
        if auth == "sdk":  # the plain SDK refuses another credential so too
            theirs = _open(http, plain, "alice-token")
            assert _list_tools(http, plain, "bob-token", theirs).content == unknown.content
        session = _open(http, a, "alice-token")
        for instance in (b, a):  # the other instance first: nothing may be restored for bob
            for attempt in (_list_tools, _resume):
                refused = attempt(http, instance, "bob-token", session)
                assert refused.status_code == 404, (instance.name, attempt.__name__)
                assert refused.content == unknown.content, (instance.name, attempt.__name__)
        for instance in (b, a):
            assert _list_tools(http, instance, "alice-token", session).status_code == 200
