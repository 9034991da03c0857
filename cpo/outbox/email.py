"""The outbox's "email" transport: a message whose body is an e-mail as JSON, sent with
Django's mail API (EMAIL_* settings) when a worker delivers it.

The body is `{"to": [...], "subject": ..., "text": ..., "headers": {...}}`; `headers` carry
what threads a conversation (Message-ID, In-Reply-To, References). A mail server that is down
or refuses for now fails the attempt and the outbox retries it; a message that cannot be an
e-mail, or whose every recipient is refused for good (5xx), is a dead letter at once.
"""

from __future__ import annotations

import json
import smtplib
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.mail import EmailMessage, get_connection

from cpo.outbox.transports import HttpAnswer, TransportError, transport_register

if TYPE_CHECKING:
    from cpo.outbox.models import OutboxMessage

KIND = "email"


def email_body(
    *, to: list[str], subject: str, text: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """What `outbox_enqueue(destination_kind="email", body=...)` stores for one e-mail."""
    return {"to": list(to), "subject": subject, "text": text, "headers": dict(headers or {})}


def _parse(message: OutboxMessage) -> EmailMessage:
    try:
        data = json.loads(bytes(message.body))
        to = [str(address) for address in data["to"]]
        subject = str(data["subject"])
        text = str(data["text"])
        headers = {str(k): str(v) for k, v in (data.get("headers") or {}).items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise TransportError(f"not an e-mail message: {error}", permanent=True) from error
    if not to:
        raise TransportError("an e-mail without recipients", permanent=True)
    return EmailMessage(
        subject=subject,
        body=text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=to,
        headers=headers,
    )


def email_transport(message: OutboxMessage) -> HttpAnswer:
    email = _parse(message)
    try:
        connection = get_connection(fail_silently=False, timeout=settings.EMAIL_TIMEOUT)
        sent = connection.send_messages([email])
    except smtplib.SMTPRecipientsRefused as error:
        codes = [code for code, _ in error.recipients.values()]
        permanent = all(500 <= code < 600 for code in codes)
        raise TransportError(
            f"recipients refused: {error.recipients}"[:500], permanent=permanent
        ) from error
    except (smtplib.SMTPException, OSError) as error:
        raise TransportError(f"{type(error).__name__}: {error}"[:500]) from error
    if not sent:
        raise TransportError("the mail backend sent nothing")
    # 250, SMTP's "OK": the outbox counts any 2xx as delivered.
    return HttpAnswer(250, f"sent to {', '.join(email.to)}")


def register() -> None:
    transport_register(KIND, email_transport)
