from __future__ import annotations

from django.urls import re_path

from stations.ocpp.consumer import OcppConsumer

websocket_urlpatterns = [
    # /ocpp/<identity>, optionally followed by a version segment (/ocpp/<identity>/ocpp1.6).
    re_path(r"^ocpp/(?P<identity>[^/]+)(?:/(?P<version>ocpp[0-9.]+))?/?$", OcppConsumer.as_asgi()),
]
