"""The outbox's "email" transport against a real SMTP server on loopback: sent with the stored
headers, a refused or absent server fails the attempt (retried), recipients refused for good
and a body that is no e-mail are dead letters at once."""

from __future__ import annotations

import email
import email.policy
import json
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from cpo.outbox.email import email_body, email_transport
from cpo.outbox.models import OutboxMessage
from cpo.outbox.transports import TransportError
from tests.conftest import free_port


class Handler:
    def __init__(self) -> None:
        self.received: list[Any] = []
        self.refuse_rcpt = ""

    async def handle_RCPT(self, server, session, envelope, address, options):  # noqa: N802
        if self.refuse_rcpt:
            return self.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.received.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 OK"


@pytest.fixture
def smtp(settings):
    handler = Handler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    # pytest-django's locmem backend would send nothing anywhere: the real one, to this server.
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_TIMEOUT = 5
    settings.DEFAULT_FROM_EMAIL = "alerts@cpo.test"
    yield handler
    controller.stop()


def _message(body: Any) -> OutboxMessage:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return OutboxMessage(destination_kind="email", destination_ref="1", url="mailto:", body=raw)


MAIL = email_body(
    to=["ops@example.com"],
    subject="[error] CP-1: faulted",
    text="Connector: 1\n",
    headers={"Message-ID": "<m1@cpo.test>", "In-Reply-To": "<m0@cpo.test>"},
)


def test_an_email_is_sent_with_its_headers(smtp) -> None:
    answer = email_transport(_message(MAIL))
    assert answer.ok
    [got] = smtp.received
    assert got["Subject"] == "[error] CP-1: faulted"
    assert got["From"] == "alerts@cpo.test"
    assert got["Message-ID"] == "<m1@cpo.test>"
    assert got["In-Reply-To"] == "<m0@cpo.test>"


def test_recipients_refused_for_good_are_permanent_for_now_are_retried(smtp) -> None:
    smtp.refuse_rcpt = "550 no such mailbox"
    with pytest.raises(TransportError) as refused:
        email_transport(_message(MAIL))
    assert refused.value.permanent
    smtp.refuse_rcpt = "451 try again later"
    with pytest.raises(TransportError) as later:
        email_transport(_message(MAIL))
    assert not later.value.permanent
    assert smtp.received == []


def test_no_server_fails_the_attempt_to_be_retried(settings) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = free_port()  # nothing listens there
    settings.EMAIL_TIMEOUT = 2
    with pytest.raises(TransportError) as failed:
        email_transport(_message(MAIL))
    assert not failed.value.permanent


@pytest.mark.parametrize("body", [b"not json", {"subject": "s", "text": "t"}, {**MAIL, "to": []}])
def test_a_body_that_is_no_email_is_a_dead_letter_at_once(body) -> None:
    with pytest.raises(TransportError) as refused:
        email_transport(_message(body))
    assert refused.value.permanent
