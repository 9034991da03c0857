"""The webhook signature and the back-off: pure functions."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from cpo.outbox.services import retry_delay
from cpo.outbox.signing import signature_header, signature_verify

SECRET = "whsec_test-secret"
BODY = b'{"id":"e1","type":"session.started"}'


def test_the_header_is_the_documented_hmac_over_timestamp_dot_body() -> None:
    header = signature_header(SECRET, BODY, timestamp=1_700_000_000)
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_a_signature_verifies_with_its_secret_body_and_time() -> None:
    header = signature_header(SECRET, BODY, timestamp=1_700_000_000)
    assert signature_verify(SECRET, header, BODY, now=1_700_000_010)


@pytest.mark.parametrize(
    ("secret", "body", "now"),
    [
        ("whsec_other", BODY, 1_700_000_010),  # another secret
        (SECRET, BODY + b" ", 1_700_000_010),  # a changed body
        (SECRET, BODY, 1_700_000_000 + 301),  # replayed after the tolerance
        (SECRET, BODY, 1_700_000_000 - 301),  # from the future
    ],
)
def test_anything_else_does_not_verify(secret: str, body: bytes, now: int) -> None:
    header = signature_header(SECRET, BODY, timestamp=1_700_000_000)
    assert not signature_verify(secret, header, body, now=now)


@pytest.mark.parametrize("header", ["", "v1=abc", "t=x,v1=abc", "t=1700000000"])
def test_a_malformed_header_does_not_verify(header: str) -> None:
    assert not signature_verify(SECRET, header, BODY, now=1_700_000_000)


def test_back_off_doubles_from_the_base_up_to_the_cap(settings) -> None:
    settings.OUTBOX_RETRY_BASE_SECONDS = 10.0
    settings.OUTBOX_RETRY_MAX_SECONDS = 300.0
    lowest = [retry_delay(attempts=n, rng=lambda: 0.0) for n in range(1, 8)]
    highest = [retry_delay(attempts=n, rng=lambda: 1.0) for n in range(1, 8)]
    assert highest == [10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0]
    # Equal jitter: never less than half the step, so a retry never comes at once.
    assert lowest == [h / 2 for h in highest]


def test_back_off_is_jittered(settings) -> None:
    settings.OUTBOX_RETRY_BASE_SECONDS = 10.0
    settings.OUTBOX_RETRY_MAX_SECONDS = 300.0
    delays = {retry_delay(attempts=3) for _ in range(50)}
    assert len(delays) > 40
    assert all(20.0 <= d <= 40.0 for d in delays)
