"""Fixtures for OCPI tests: our party, a published network, partners, and a loopback partner
platform (a plain HTTP server on 127.0.0.1) for the callbacks of the credentials exchange."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import Client


@pytest.fixture
def party(db: Any) -> Any:  # noqa: ARG001
    from roaming.models import OurParty

    return OurParty.objects.create(
        country_code="NL", party_id="CPO", name="CPO Operations", is_default=True
    )


def make_site(
    name: str, *, stations: int = 1, evses: int = 2, online: bool = True, **fields: Any
) -> Any:
    """A site with `stations` 1.6 stations of `evses` connectors each (one EVSE per connector)."""
    from stations.models import ChargingStation, Connector, Evse, Location

    values: dict[str, Any] = {
        "address": "Stationsplein 1",
        "city": "Amsterdam",
        "postal_code": "1012 AB",
        "latitude": Decimal("52.378900"),
        "longitude": Decimal("4.900100"),
    }
    values.update(fields)
    site = Location.objects.create(name=name, **values)
    for s in range(stations):
        station = ChargingStation.objects.create(
            identity=f"{name}-{s}", location=site, protocol="ocpp1.6", is_online=online
        )
        for number in range(1, evses + 1):
            evse = Evse.objects.create(station=station, evse_id=number, uid=f"{name}-{s}-{number}")
            Connector.objects.create(
                station=station, evse=evse, connector_id=number, status="Available"
            )
    return site


@pytest.fixture
def partner(party: Any) -> Any:
    from roaming.models import Partner

    partner = Partner.objects.create(name="eMSP One")
    partner.allowed_parties.add(party)
    return partner


def auth(token: str, *, b64: bool = True) -> dict[str, Any]:
    value = base64.b64encode(token.encode()).decode() if b64 else token
    return {"HTTP_AUTHORIZATION": f"Token {value}"}


def envelope_of(response: Any) -> dict[str, Any]:
    """The body of any OCPI answer, checked for the envelope's shape."""
    body = json.loads(response.content)
    assert isinstance(body["status_code"], int), body
    assert str(body["timestamp"]).endswith("Z"), body
    assert "status_message" in body
    return body


class LoopbackPlatform:
    """A partner platform on loopback: versions and details for its token, a credentials
    endpoint that answers with `answer_token`; it records every request it gets."""

    def __init__(self, *, token: str, b64: bool = True, versions: tuple[str, ...] = ("2.2.1",)):
        self.token = token
        self.b64 = b64
        self.versions = versions
        self.answer_token = "their-token-C"
        self.requests: list[dict[str, Any]] = []
        self.down = False
        # How a token in the wrong encoding is refused: HTTP 401, or (as some platforms do)
        # an OCPI 3000 inside HTTP 200.
        self.refuse_with_3000 = False
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, code: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                platform.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": body,
                    }
                )
                if platform.down:
                    self._answer(503, {"status_code": 3000, "timestamp": "2026-01-01T00:00:00Z"})
                    return
                expected = platform.token
                if platform.b64:
                    expected = base64.b64encode(expected.encode()).decode()
                if self.headers.get("Authorization") != f"Token {expected}":
                    if platform.refuse_with_3000:
                        self._answer(
                            200, {"status_code": 3000, "timestamp": "2026-01-01T00:00:00Z"}
                        )
                        return
                    self._answer(401, {"status_code": 2000, "timestamp": "2026-01-01T00:00:00Z"})
                    return
                self._answer(200, platform.route(self.command, self.path, body))

            do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def versions_url(self) -> str:
        return f"{self.url}/versions"

    def route(self, method: str, path: str, body: Any) -> dict[str, Any]:
        ok = {"status_code": 1000, "timestamp": "2026-01-01T00:00:00Z"}
        if path == "/versions":
            return ok | {"data": [{"version": v, "url": f"{self.url}/{v}"} for v in self.versions]}
        version = path.strip("/").split("/")[0]
        if path.strip("/") == version:
            endpoints = [
                {
                    "identifier": "credentials",
                    "role": "RECEIVER",
                    "url": f"{self.url}/{version}/credentials",
                },
                {"identifier": "tokens", "role": "SENDER", "url": f"{self.url}/{version}/tokens"},
            ]
            if version == "2.1.1":
                endpoints = [{k: v for k, v in e.items() if k != "role"} for e in endpoints]
            return ok | {"data": {"version": version, "endpoints": endpoints}}
        if path.endswith("/credentials") and method == "POST":
            credentials: dict[str, Any] = {"token": self.answer_token, "url": self.versions_url}
            if version == "2.1.1":
                credentials |= {
                    "party_id": "MSP",
                    "country_code": "DE",
                    "business_details": {"name": "eMSP"},
                }
            else:
                credentials["roles"] = [
                    {
                        "role": "EMSP",
                        "party_id": "MSP",
                        "country_code": "DE",
                        "business_details": {"name": "eMSP"},
                    }
                ]
            return ok | {"data": credentials}
        return {"status_code": 2000, "timestamp": "2026-01-01T00:00:00Z"}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def platform() -> Iterator[LoopbackPlatform]:
    server = LoopbackPlatform(token="their-token-B")
    yield server
    server.stop()


def credentials_body(platform: LoopbackPlatform, *, token: str | None = None) -> dict[str, Any]:
    return {
        "token": token or platform.token,
        "url": platform.versions_url,
        "roles": [
            {
                "role": "EMSP",
                "party_id": "MSP",
                "country_code": "DE",
                "business_details": {"name": "eMSP One"},
            }
        ],
    }


def post(client: Client, url: str, body: Any, **headers: Any) -> Any:
    return client.post(url, json.dumps(body), content_type="application/json", **headers)


def put(client: Client, url: str, body: Any, **headers: Any) -> Any:
    return client.put(url, json.dumps(body), content_type="application/json", **headers)


class PushReceiver:
    """A partner's receiver endpoints on loopback: it records every call (method, path,
    headers, JSON body) and answers `answer` (an OCPI envelope) with `http_status`, or 503 while
    `down`. `headers` are added to every answer (a CDR POST's Location)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.down = False
        self.http_status = 200
        self.answer: dict[str, Any] = {"status_code": 1000, "timestamp": "2026-01-01T00:00:00Z"}
        self.headers: dict[str, str] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if receiver.down:
                    code, answer = 503, {"status_code": 3000, "timestamp": "2026-01-01T00:00:00Z"}
                else:
                    code, answer = receiver.http_status, receiver.answer
                    with receiver.lock:
                        receiver.calls.append(
                            {
                                "method": self.command,
                                "path": self.path,
                                "headers": self.headers,  # case-insensitive
                                "body": json.loads(raw) if raw else None,
                            }
                        )
                out = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                for name, value in ({} if receiver.down else receiver.headers).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_PATCH = _handle  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def push_receiver() -> Iterator[PushReceiver]:
    server = PushReceiver()
    yield server
    server.stop()


def registered_partner(
    party: Any,
    receiver: PushReceiver,
    *,
    name: str = "eMSP Push",
    version: str = "2.2.1",
    b64: bool = True,
    token: str = "their-token-C",  # noqa: S107 - a test token
    is_hub: bool = False,
    modules: tuple[str, ...] = ("locations", "tariffs", "sessions", "cdrs", "commands"),
    country_code: str = "DE",
    party_id: str = "MSP",
) -> Any:
    """A partner registered with us, whose receiver endpoints are on `receiver`."""
    from django.utils import timezone

    from cpo.lib.sealing import seal
    from roaming.models import Partner

    endpoints = []
    for module in modules:
        endpoint = {"identifier": module, "url": f"{receiver.url}/{version}/{module}"}
        if version != "2.1.1":
            endpoint["role"] = "RECEIVER"
        endpoints.append(endpoint)
    partner = Partner.objects.create(
        name=name,
        status=Partner.Status.REGISTERED,
        version=version,
        is_hub=is_hub,
        endpoints=endpoints,
        roles=[{"role": "EMSP", "country_code": country_code, "party_id": party_id}],
        their_token_sealed=seal(token),
        encode_token_b64=b64,
        registered_at=timezone.now(),
    )
    partner.allowed_parties.add(party)
    return partner
