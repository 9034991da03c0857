"""The port through which the command queue reaches a station's protocol.

The queue is version-neutral: callers ask for verbs with neutral parameters. Turning a verb
into the call of a station's OCPP version, checking a raw payload against the official schema,
and reading the station's answer are the OCPP edge's business. The edge implements
`CommandCodec` and registers it here when Django starts (`stations.ocpp.apps.OcppConfig`), so
the queue never imports the edge, while the edge imports the queue to claim and record
commands: the arrow points one way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class Outcome:
    """A station's answer to a command: the command's final status and, in one word, what
    the station said (Accepted, Rejected, Unlocked, VersionMismatch, NotSupported, ...)."""

    status: str
    result: str = ""


class CommandCodec(Protocol):
    def supports(self, version: str, verb: str) -> bool:
        """Does a station speaking `version` have a call for `verb`?"""

    def encode(
        self, version: str, verb: str, params: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """The (action, payload) of `verb`, schema-valid, or CommandError."""

    def check_raw(self, version: str, action: str, payload: Any) -> None:
        """CommandError unless `payload` is a valid call of `action` in `version`."""

    def verb_of(self, version: str, action: str) -> str:
        """The verb a raw action belongs to ("" when none): it expires like that verb."""

    def id_token_max_length(self, version: str) -> int:
        """The longest id token a station speaking `version` can hold."""

    def items_limit_instance(self, version: str, action: str) -> str:
        """The instance of the station's DeviceDataCtrlr.ItemsPerMessage variable that limits
        the items of one `action` call ("" when the call is never split)."""

    def items_split(
        self, version: str, action: str, payload: dict[str, Any], size: int
    ) -> list[dict[str, Any]]:
        """`payload` as consecutive calls of at most `size` items each."""


_codec: CommandCodec | None = None


def codec_register(codec: CommandCodec) -> None:
    global _codec
    _codec = codec


def codec() -> CommandCodec:
    if _codec is None:
        raise ImproperlyConfigured(
            "No command codec is registered: 'stations.ocpp' must be in INSTALLED_APPS"
        )
    return _codec
