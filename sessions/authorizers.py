"""The port through which authorization asks a party outside the network about a token.

Sessions decide who may charge; some tokens belong to others (an eMSP's drivers, seen through
roaming). Roaming sits above sessions and implements `ExternalAuthorizer`, registered in its
AppConfig.ready(), as the OCPP edge registers its codec with the command queue: sessions
never import roaming. With nothing registered (roaming not installed) authorization is what
it always was, at no cost.

The authorizer is asked only about a token we do not know, or one of ours that carries an
issuer (a roaming token's local twin). It answers None ("not mine: decide locally"), or a
verdict: a refusal stands; an acceptance is then checked by the local rules on the token it
names (blocked by an operator, concurrency, the group, budgets), so roaming tokens obey them
too. It may call the partner (real time) and must then bound its wait by a deadline: it runs
on the thread of the service call, never on the OCPP consumer's event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sessions.models import IdToken


@dataclass(frozen=True)
class ExternalAnswer:
    status: str  # a sessions.services.AuthStatus value
    reason: str
    # The local token the rules then apply to (a roaming token's twin), if any.
    token: IdToken | None = None
    # The eMSP's reference for this authorization (OCPI authorization_reference).
    authorization_reference: str = ""
    expiry: datetime | None = None


class ExternalAuthorizer(Protocol):
    def __call__(
        self,
        *,
        uid: str,
        token_type: str | None,
        station_id: int | None,
        token: IdToken | None,
        context: str,
        now: datetime,
    ) -> ExternalAnswer | None: ...


_authorizer: ExternalAuthorizer | None = None


def external_authorizer_register(authorizer: ExternalAuthorizer | None) -> None:
    global _authorizer
    _authorizer = authorizer


def external_authorizer() -> ExternalAuthorizer | None:
    return _authorizer
