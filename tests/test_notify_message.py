"""AlertMessage: the JSON round trip the outbox relies on, and highlight segments."""

from __future__ import annotations

import json
from dataclasses import replace

from monitor.notify import AlertMessage
from monitor.notify.message import segments, truncate
from monitor.notify.templates import sample_digest, sample_message


def test_round_trips_through_json() -> None:
    msg = replace(sample_message(), thread_ts="1.2", detail="d")
    assert AlertMessage.from_dict(json.loads(json.dumps(msg.to_dict()))) == msg


def test_digest_round_trips_with_its_items() -> None:
    digest = sample_digest()
    restored = AlertMessage.from_dict(json.loads(json.dumps(digest.to_dict())))
    assert restored == digest
    assert isinstance(restored.items[0], AlertMessage)


def test_segments_merge_overlapping_and_clamp_out_of_range_spans() -> None:
    assert segments("abcdefgh", [(5, 99), (1, 3), (2, 4), (-3, 0)]) == [
        ("a", False),
        ("bcd", True),
        ("e", False),
        ("fgh", True),
    ]


def test_truncate_ends_with_an_ellipsis_within_the_limit() -> None:
    assert truncate("hello world", 8) == "hello w…"
    assert truncate("short", 8) == "short"
