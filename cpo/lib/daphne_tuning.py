"""daphne's websocket server, tuned for thousands of idle chargers (README "Performance").

One place, applied by cpo/asgi.py when daphne imports the application (before it builds its
websocket factory):

- autobahn copies each of its ~30 protocol options from the factory onto every connection's
  protocol object, unless the protocol class already has the attribute: ~30 keys more in the
  `__dict__` of every open websocket. The factory here gives its protocol class those options
  as class attributes, so the copy is skipped (the values are the factory's either way).
- permessage-deflate is declined, explicitly rather than by autobahn's default: a compressing
  connection keeps two zlib streams (~300 KiB at the usual 15 window bits) for its whole life,
  while OCPP frames are small JSON (a few hundred bytes).
"""

from __future__ import annotations

import types
from typing import Any


def decline_compression(offers: list[Any]) -> None:
    """autobahn's perMessageCompressionAccept: None accepts none of the charger's offers."""
    return None


def install() -> None:
    try:
        from daphne import server
        from daphne.ws_protocol import WebSocketFactory
    except ImportError:  # served by another ASGI server
        return

    if getattr(server.WebSocketFactory, "lean", False):
        return

    class LeanWebSocketFactory(WebSocketFactory):
        lean = True

        def setProtocolOptions(self, **options: Any) -> None:  # noqa: N802 - autobahn's name
            options["perMessageCompressionAccept"] = decline_compression
            super().setProtocolOptions(**options)
            # The protocol class set so far (cpo.lib.daphne_server's, with the denial extension),
            # given the options as class attributes.
            base: Any = getattr(self, "protocol")  # noqa: B009 - autobahn sets it untyped
            shared = {}
            for name in base.CONFIG_ATTRS:
                value = getattr(self, name)
                # A plain function as a class attribute would become a method.
                shared[name] = (
                    staticmethod(value) if isinstance(value, types.FunctionType) else value
                )
            self.protocol = type(f"Lean{base.__name__}", (base,), shared)

    server.WebSocketFactory = LeanWebSocketFactory
