"""A bytes fuzz of ``decode_session`` for a given time, outside ``make test`` (pytest does not
collect this file).

Inputs are random bytes or a valid envelope mutated a few times (bytes flipped, inserted, cut,
msgpack headers of hostile kinds spliced in). For each, the fast path and the general path must
agree and the public decode must decode it or refuse it with ``CorruptRecordError``
(``assert_same_as_general``). Prints how many inputs ran.

Run it with ``.venv/bin/python core/tests/fuzz_codec.py [SECONDS]`` (default 180).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_codec_properties import (
    DEEP_METADATA,
    assert_same_as_general,
    valid_payload,
)

from sessionstore import SessionRecord

SPLICED = [
    b"\xc1",  # never used
    b"\xdd\xff\xff\xff\xff",  # array32 of 4G items
    b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00",  # NaN
    b"\xd4\x05\x00",  # extension type 5
    b"\xd6\xff\x00\x00\x00\x01",  # msgpack timestamp
    b"\xa2id",
    b"\x80",
    b"\x90",
]


def main(seconds: float) -> int:
    deadline = time.monotonic() + seconds
    count = 0

    # Batches of examples, each a fresh Hypothesis run, until the time is up.
    @settings(
        max_examples=500,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def fuzz(data: st.DataObject) -> None:
        nonlocal count
        if data.draw(st.booleans()):
            payload = data.draw(st.binary(max_size=400))
        else:
            mutable = bytearray(data.draw(st.sampled_from([valid_payload, DEEP_METADATA])))
            for _ in range(data.draw(st.integers(1, 6))):
                where = data.draw(st.integers(0, len(mutable)))
                action = data.draw(st.integers(0, 3))
                if action == 0 and where < len(mutable):
                    mutable[where] = data.draw(st.integers(0, 255))
                elif action == 1:
                    mutable[where:where] = data.draw(st.binary(min_size=1, max_size=8))
                elif action == 2:
                    del mutable[where : where + data.draw(st.integers(1, 8))]
                else:
                    mutable[where:where] = data.draw(st.sampled_from(SPLICED))
            payload = bytes(mutable)
        count += 1
        assert_same_as_general(SessionRecord("sid-1", 1, None, payload))

    while time.monotonic() < deadline:
        fuzz()
    print(f"fuzzed {count} inputs in {seconds:g} s: no failure")
    return 0


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 180.0))
