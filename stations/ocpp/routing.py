from __future__ import annotations

from typing import Any

from django.urls import re_path

from stations.ocpp.consumer import OcppConsumer, RefusingConsumer

# Any: the stubs of Channels' URLRouter want a pattern type of their own.
websocket_urlpatterns: list[Any] = [
    # /ocpp/<identity>, optionally followed by a version segment (/ocpp/<identity>/ocpp1.6).
    re_path(r"^ocpp/(?P<identity>[^/]+)(?:/(?P<version>ocpp[0-9.]+))?/?$", OcppConsumer.as_asgi()),  # type: ignore[arg-type]  # an ASGI app: Channels routes with Django's re_path
    # Any other path (/ocpp/x/../ID, /ocpp/, /elsewhere): HTTP 403 at the handshake, not the
    # router's "no route found" error and its HTTP 500.
    re_path(r"", RefusingConsumer.as_asgi()),  # type: ignore[arg-type]  # as above
]
