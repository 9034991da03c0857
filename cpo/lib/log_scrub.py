"""Credentials that travel in URLs, kept out of every log line.

A station gets a one-time upload URL for its diagnostics and log files
(`/uploads/diagnostics/<token>/`): OCPP gives it nothing but that URL, so the token cannot move
to a header. It is scrubbed instead wherever a URL is written down: daphne's access log (which
writes the request line to stdout itself, outside `logging`), Django's request log ("Not
Found: <path>" and the like) through the handler filter of settings.LOGGING, and stored
command payloads (`stations.secret_keys`).
"""

from __future__ import annotations

import logging
import re
from typing import Any

# A path prefix whose next segment is a credential. The replacement keeps the prefix, so the
# log still says which endpoint was used.
_TOKEN_IN_PATH = re.compile(r"(/uploads/diagnostics/)[^/\s?#\"']+")
REDACTED = "[token]"


def scrub(text: str) -> str:
    """`text` with every URL credential replaced by [token]."""
    if "/uploads/" not in text:
        return text
    return _TOKEN_IN_PATH.sub(rf"\g<1>{REDACTED}", text)


class ScrubTokens(logging.Filter):
    """Handler filter: renders the record and scrubs credentials from its message."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logging's to report, not ours
            return True
        scrubbed = scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


def install_daphne_access_log_scrub() -> None:
    """Make daphne's access log scrub credentials from the request lines it writes.

    Daphne builds its access logger after it imports the ASGI application, so this runs from
    cpo.asgi and covers every way of starting daphne on it.
    """
    try:
        from daphne.access import AccessLogGenerator
    except ImportError:  # served by another ASGI server
        return
    if getattr(AccessLogGenerator.write_entry, "scrubbed", False):
        return
    original = AccessLogGenerator.write_entry

    def write_entry(self: Any, host: Any, date: Any, request: Any, *args: Any, **kw: Any) -> Any:
        if isinstance(request, str):
            request = scrub(request)
        return original(self, host, date, request, *args, **kw)

    write_entry.scrubbed = True  # type: ignore[attr-defined]  # marks the patch as done
    AccessLogGenerator.write_entry = write_entry
