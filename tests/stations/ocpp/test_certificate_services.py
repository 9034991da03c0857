"""GetCertificateStatus asks the OCSP responder the station names (a real RFC 6960 responder
on loopback, built with cryptography), and Get15118EVCertificate is forwarded to the
configured certificate provisioning service (a loopback HTTP service)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from ocpp.v201 import call as call201

from stations import pki
from stations.commands import security
from stations.models import ChargingStation
from tests.conftest import start_daphne
from tests.ocpp_client import station
from tests.stations.ocpp.test_security_tls import make_csr

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]


class Loopback:
    """A small HTTP server in a thread; `answer(path, body) -> (status, content type, body)`."""

    def __init__(self, answer):
        self.requests: list[bytes] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append(body)
                status, kind, data = answer(self.path, body)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def responder() -> Iterator[tuple[Loopback, dict]]:
    """An OCSP responder of our CA: GOOD for the certificates in `known`, REVOKED for those
    marked so, UNKNOWN otherwise; signed by the intermediate."""
    known: dict[int, tuple[Any, bool]] = {}
    ca = pki.authority()

    def answer(path: str, body: bytes):
        request = ocsp.load_der_ocsp_request(body)
        now = dt.datetime.now(dt.UTC)
        certificate, revoked = known.get(request.serial_number, (None, False))
        if certificate is None:
            return (
                200,
                "application/ocsp-response",
                ocsp.OCSPResponseBuilder.build_unsuccessful(
                    ocsp.OCSPResponseStatus.UNAUTHORIZED
                ).public_bytes(serialization.Encoding.DER),
            )
        builder = ocsp.OCSPResponseBuilder().add_response(
            cert=certificate,
            issuer=ca.intermediate,
            algorithm=hashes.SHA256(),
            cert_status=ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD,
            this_update=now,
            next_update=now + dt.timedelta(hours=1),
            revocation_time=now if revoked else None,
            revocation_reason=None,
        )
        response = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, ca.intermediate).sign(
            ca.intermediate_key, hashes.SHA256()
        )
        return 200, "application/ocsp-response", response.public_bytes(serialization.Encoding.DER)

    server = Loopback(answer)
    yield server, known
    server.stop()


@sync_to_async
def signed(identity: str):
    row = ChargingStation.objects.create(identity=identity, protocol="ocpp2.0.1")
    csr, _ = make_csr(identity)
    csr_id, refused = security.csr_receive(station_id=row.pk, csr=csr)
    assert not refused
    certificate = security.csr_sign(csr_id=csr_id)
    return pki.certificate_load(certificate.pem)


def request_data(certificate, url: str) -> dict:
    ca = pki.authority()
    hashed = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(certificate, ca.intermediate, hashes.SHA256())
        .build()
    )
    return {
        "hash_algorithm": "SHA256",
        "issuer_name_hash": hashed.issuer_name_hash.hex(),
        "issuer_key_hash": hashed.issuer_key_hash.hex(),
        "serial_number": format(certificate.serial_number, "x"),
        "responder_url": url,
    }


async def test_certificate_status_is_asked_of_the_named_responder_and_cached(
    daphne_server, responder
):
    server, known = responder
    good = await signed("OCSP-1")
    bad = await signed("OCSP-2")
    known[good.serial_number] = (good, False)
    known[bad.serial_number] = (bad, True)
    async with station(daphne_server.ws_url, "OCSP-1", protocol="ocpp2.0.1") as cp:
        for _ in range(2):
            answer = await cp.cp.call(
                call201.GetCertificateStatus(ocsp_request_data=request_data(good, server.url))
            )
            assert answer.status == "Accepted"
            response = ocsp.load_der_ocsp_response(base64.b64decode(answer.ocsp_result))
            assert response.certificate_status == ocsp.OCSPCertStatus.GOOD
            assert response.serial_number == good.serial_number
        assert len(server.requests) == 1  # the second answer came from the cache
        # What the responder got is a real OCSP request for the station's certificate.
        sent = ocsp.load_der_ocsp_request(server.requests[0])
        assert sent.serial_number == good.serial_number

        answer = await cp.cp.call(
            call201.GetCertificateStatus(ocsp_request_data=request_data(bad, server.url))
        )
        response = ocsp.load_der_ocsp_response(base64.b64decode(answer.ocsp_result))
        assert response.certificate_status == ocsp.OCSPCertStatus.REVOKED

        # A responder that refuses, one that is not there, a URL that is not http: Failed.
        stranger = await signed("OCSP-3")
        answer = await cp.cp.call(
            call201.GetCertificateStatus(ocsp_request_data=request_data(stranger, server.url))
        )
        assert answer.status == "Failed"
        for url in ("http://127.0.0.1:9/ocsp", "file:///etc/passwd"):
            answer = await cp.cp.call(
                call201.GetCertificateStatus(ocsp_request_data=request_data(good, url))
            )
            assert answer.status == "Failed"
            assert answer.status_info["reason_code"] == "OCSPFailed"


async def test_ev_certificate_requests_are_forwarded_to_the_provisioning_service():
    def answer(path: str, body: bytes):
        asked = json.loads(body)
        reply = {
            "status": "Accepted",
            "exiResponse": base64.b64encode(b"EXI:" + asked["exiRequest"].encode()).decode(),
        }
        return 200, "application/json", json.dumps(reply).encode()

    service = Loopback(answer)
    server = start_daphne("node-15118", ISO15118_CERTIFICATE_SERVICE_URL=service.url + "/cps")
    try:
        await sync_to_async(ChargingStation.objects.create)(identity="CPS-1", protocol="ocpp2.0.1")
        async with station(server.ws_url, "CPS-1", protocol="ocpp2.0.1") as cp:
            result = await cp.cp.call(
                call201.Get15118EVCertificate(
                    iso15118_schema_version="urn:iso:15118:2:2013:MsgDef",
                    action="Install",
                    exi_request="AAEC",
                )
            )
        assert result.status == "Accepted"
        assert base64.b64decode(result.exi_response) == b"EXI:AAEC"
        forwarded = json.loads(service.requests[0])
        assert forwarded == {
            "identity": "CPS-1",
            "iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef",
            "action": "Install",
            "exiRequest": "AAEC",
        }
    finally:
        server.stop()
        service.stop()
