"""ASGI entry point: HTTP (admin, API, OCPI) and the OCPP websocket endpoint."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cpo.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

# Apps must be loaded before the routing imports consumers and models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from stations.routing import websocket_urlpatterns  # noqa: E402

# Chargers send no Origin header: the OCPP route is deliberately NOT wrapped in
# AllowedHostsOriginValidator; stations authenticate in the consumer's connect().
application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
