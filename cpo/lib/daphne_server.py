"""daphne with the ASGI WebSocket Denial Response extension: `python -m cpo.lib.daphne_server`.

daphne answers every handshake an application refuses with HTTP 403. A charger with a missing
or wrong Basic-auth password must get 401 Unauthorized with a `WWW-Authenticate` challenge
(RFC 7235; the OCPP security profiles 1 and 2). The extension lets the application send, before
it accepts, `websocket.http.response.start` (status, headers) and `websocket.http.response.body`
(body, more_body); the server then answers the upgrade request with that HTTP response and
drops the connection. The scope announces it as `extensions["websocket.http.response"]`, so an
application can fall back to `websocket.close` (403) on a server without it.

It also sends the reason of an application's `websocket.close` (ASGI spec), which daphne drops.
Everything else is daphne's, started with daphne's own command line (the same options).
"""

from __future__ import annotations

import sys
from http import HTTPStatus
from typing import Any

from autobahn.websocket.types import ConnectionDeny
from daphne.cli import CommandLineInterface
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol

DENIAL_EXTENSION = "websocket.http.response"


class DenialWebSocketProtocol(WebSocketProtocol):
    """daphne's websocket protocol, also answering a handshake with the application's own
    HTTP response."""

    denial: tuple[int, list[tuple[str, str]], bytearray] | None = None

    def handle_reply(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "websocket.http.response.start":
            if self.state != self.STATE_CONNECTING or self.denial is not None:
                raise ValueError("websocket.http.response.start after the handshake")
            status = int(message["status"])
            headers = [
                (bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
                for name, value in message.get("headers", [])
            ]
            self.denial = (status, headers, bytearray())
            return
        if kind == "websocket.http.response.body":
            if self.denial is None or not hasattr(self, "handshake_deferred"):
                raise ValueError("websocket.http.response.body without its start")
            self.denial[2].extend(message.get("body", b""))
            if not message.get("more_body", False):
                self._deny()
            return
        if kind == "websocket.close" and self.state != self.STATE_CONNECTING:
            # daphne drops the close reason the ASGI spec lets an application give.
            reason = message.get("reason") or None
            code = message.get("code")
            self.sendClose(code=1000 if code is None else code, reason=reason)
            return
        super().handle_reply(message)

    def _deny(self) -> None:
        assert self.denial is not None
        status = self.denial[0]
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Denied"
        # autobahn answers the upgrade request through sendHttpErrorResponse (below).
        self.handshake_deferred.errback(ConnectionDeny(code=status, reason=reason))
        del self.handshake_deferred
        self.server.protocol_disconnected(self)
        self.server.log_action(
            "websocket",
            "rejected",
            {
                "path": self.request.path,
                "client": ":".join(map(str, self.client_addr)) if self.client_addr else None,
            },
        )

    def sendHttpErrorResponse(  # noqa: N802  # autobahn's name
        self,
        code: int,
        reason: str,
        responseHeaders: Any = None,  # noqa: N803
    ) -> None:
        if self.denial is None or code != self.denial[0]:
            super().sendHttpErrorResponse(code, reason, responseHeaders)
            return
        _, headers, body = self.denial
        lines = [f"HTTP/1.1 {code} {reason}"]
        lines += [
            f"{name}: {value}"
            for name, value in headers
            if name.lower() not in ("content-length", "connection")
        ]
        lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
        self.sendData("\r\n".join(lines).encode("latin-1") + bytes(body))


class DenialServer(Server):
    """daphne's server with DenialWebSocketProtocol on its websocket factory, announcing the
    extension in every websocket scope."""

    @property
    def ws_factory(self) -> Any:
        return self._ws_factory

    @ws_factory.setter
    def ws_factory(self, factory: Any) -> None:
        # Server.run() builds daphne's WebSocketFactory; its protocol is ours.
        factory.protocol = DenialWebSocketProtocol
        self._ws_factory = factory

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        if scope.get("type") == "websocket" and isinstance(protocol, DenialWebSocketProtocol):
            scope["extensions"] = {**scope.get("extensions", {}), DENIAL_EXTENSION: {}}
        return super().create_application(protocol, scope)


class DenialCommandLineInterface(CommandLineInterface):
    server_class = DenialServer


def main() -> None:
    DenialCommandLineInterface().run(sys.argv[1:])


if __name__ == "__main__":
    main()
