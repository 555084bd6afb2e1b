"""Small helpers every route uses (gateway/deps.py)."""

from __future__ import annotations

import random

from google.protobuf.timestamp_pb2 import Timestamp

from gateway.deps import rfc3339


def test_rfc3339_writes_what_protobuf_writes():
    rng = random.Random(3)
    cases = [
        (1, 0),
        (1_796_038_127, 29_206_000),
        (1_796_038_127, 5_000_000),
        (1_796_038_127, 123),
        (253_402_300_799, 999_999_999),
        (0, 1),
    ]
    cases += [
        (rng.randrange(1, 253_402_300_799), rng.choice([0, 1000 * rng.randrange(10**6), rng.randrange(10**9)]))
        for _ in range(500)
    ]
    for seconds, nanos in cases:
        stamp = Timestamp(seconds=seconds, nanos=nanos)
        assert rfc3339(stamp) == stamp.ToJsonString()
    assert rfc3339(Timestamp()) is None
