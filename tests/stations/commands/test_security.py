"""Password rotation over OCPP, end to end on the live daphne, and the security API.

The rotated password is what the station was sent (1.6: AuthorizationKey in hex; 2.0.1:
SecurityCtrlr.BasicAuthPassword); the back office checks it only once the station accepted,
and the old one until then.
"""

from __future__ import annotations

import pytest
import websockets
from asgiref.sync import sync_to_async
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import ocsp
from django.contrib.auth import get_user_model
from ocpp.v16 import call_result as result16
from rest_framework.authtoken.models import Token

from stations import pki
from stations.commands import security
from stations.commands.models import Command, SecurityChange
from stations.models import ChargingStation, StationCertificate
from tests.ocpp_client import station
from tests.stations.conftest import http, until, until_final

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

PASSWORD = "station-secret-0001"


@sync_to_async
def make_station(identity: str, protocol: str) -> ChargingStation:
    row = ChargingStation(identity=identity, protocol=protocol)
    row.set_password(PASSWORD)
    row.save()
    return row


async def connects(url: str, identity: str, password: str, protocol: str = "ocpp1.6") -> bool:
    try:
        async with station(url, identity, protocol=protocol, password=password):
            return True
    except websockets.InvalidStatus as error:
        # Refused at the handshake: 403 today, 401 once it answers RFC 7235's status.
        return error.response.status_code not in (401, 403)


def sent(cp, action: str) -> list[dict]:
    return [payload for name, payload in cp.cp.received_calls if name == action]


async def test_ocpp16_rotated_password_works_next_time_and_the_old_one_does_not(daphne_server):
    row = await make_station("ROT-16", "ocpp1.6")
    async with station(daphne_server.ws_url, "ROT-16", password=PASSWORD) as cp:
        change = await sync_to_async(security.password_rotate)(station=row)
        await until_final(change.command_id)
        payload = sent(cp, "ChangeConfiguration")[0]
        assert payload["key"] == "AuthorizationKey"
        new_password = bytes.fromhex(payload["value"]).decode()  # hex, as the whitepaper says
        assert len(new_password) == 20
    change = await sync_to_async(SecurityChange.objects.get)(pk=change.pk)
    assert change.status == SecurityChange.Status.APPLIED
    # The queue's row shows the value masked; the clear one went only to the station.
    command = await sync_to_async(Command.objects.get)(pk=change.command_id)
    assert new_password not in str(command.payload)
    assert payload["value"] not in str(command.payload)
    assert await connects(daphne_server.ws_url, "ROT-16", new_password)
    # A station that uses the hex form itself as its password means the same key.
    assert await connects(daphne_server.ws_url, "ROT-16", payload["value"])
    assert not await connects(daphne_server.ws_url, "ROT-16", PASSWORD)


async def test_a_refused_rotation_keeps_the_old_password(daphne_server):
    row = await make_station("ROT-REFUSED", "ocpp1.6")
    async with station(daphne_server.ws_url, "ROT-REFUSED", password=PASSWORD) as cp:
        cp.cp.responses["ChangeConfiguration"] = result16.ChangeConfiguration(status="Rejected")
        change = await sync_to_async(security.password_rotate)(station=row)
        await until_final(change.command_id)
        new_password = bytes.fromhex(sent(cp, "ChangeConfiguration")[0]["value"]).decode()
    await until(
        lambda: SecurityChange.objects.get(pk=change.pk).status == SecurityChange.Status.REFUSED
    )
    assert await connects(daphne_server.ws_url, "ROT-REFUSED", PASSWORD)
    assert not await connects(daphne_server.ws_url, "ROT-REFUSED", new_password)


async def test_ocpp201_rotation_through_the_api_never_shows_the_password(daphne_server):
    await make_station("ROT-201", "ocpp2.0.1")
    user = await sync_to_async(get_user_model().objects.create_superuser)("sec-admin", "", "x")
    token = (await sync_to_async(Token.objects.create)(user=user)).key
    url = f"{daphne_server.http_url}/api/v1/stations/ROT-201/password/rotation/"
    async with station(
        daphne_server.ws_url, "ROT-201", protocol="ocpp2.0.1", password=PASSWORD
    ) as cp:
        status, body = await http("POST", url, token=token)
        assert status == 202, body
        assert set(body) >= {"id", "kind", "status", "command"}
        await until_final(body["command"])
        item = sent(cp, "SetVariables")[0]["set_variable_data"][0]
        assert item["component"]["name"] == "SecurityCtrlr"
        assert item["variable"]["name"] == "BasicAuthPassword"
        new_password = item["attribute_value"]
        assert new_password not in str(body)
    assert await connects(daphne_server.ws_url, "ROT-201", new_password, "ocpp2.0.1")
    assert not await connects(daphne_server.ws_url, "ROT-201", PASSWORD, "ocpp2.0.1")
    # Bad input: an unknown station, a downgrade, a profile that does not exist.
    status, _ = await http(
        "POST", f"{daphne_server.http_url}/api/v1/stations/NOPE/password/rotation/", token=token
    )
    assert status == 404
    profile_url = f"{daphne_server.http_url}/api/v1/stations/ROT-201/security-profile/"
    status, body = await http("POST", profile_url, token=token, body={"profile": 7})
    assert status == 400


async def test_certificates_and_roots_through_the_api(daphne_server):
    row = await make_station("API-CERT", "ocpp1.6")
    user = await sync_to_async(get_user_model().objects.create_superuser)("sec-api", "", "x")
    token = (await sync_to_async(Token.objects.create)(user=user)).key
    base = f"{daphne_server.http_url}/api/v1"

    from tests.stations.ocpp.test_security_tls import make_csr

    csr, _ = make_csr("API-CERT")
    csr_id, refused = await sync_to_async(security.csr_receive)(station_id=row.pk, csr=csr)
    assert not refused
    await sync_to_async(security.csr_sign)(csr_id=csr_id)
    status, body = await http("GET", f"{base}/stations/API-CERT/certificates/", token=token)
    assert status == 200
    assert len(body) == 1
    assert body[0]["status"] == "valid"
    serial = body[0]["serial"]
    status, body = await http("POST", f"{base}/certificates/{serial}/revoke/", token=token)
    assert status == 200
    assert body["status"] == "revoked"
    assert body["revoked_by"] == "sec-api"
    status, body = await http("POST", f"{base}/certificates/{serial}/revoke/", token=token)
    assert status == 400  # already revoked: a clear answer, nothing changes
    assert (
        await sync_to_async(StationCertificate.objects.get)(serial=serial)
    ).revoked_by == "sec-api"

    status, roots = await http("GET", f"{base}/trusted-roots/", token=token)
    assert status == 200
    ours = next(r for r in roots if r["kind"] == "csms_root")
    assert ours["pem"].strip() == pki.authority().root_pem.strip()
    async with station(daphne_server.ws_url, "API-CERT", password=PASSWORD) as cp:
        for action in ("install", "delete"):
            status, body = await http(
                "POST",
                f"{base}/stations/API-CERT/roots/{ours['id']}/",
                token=token,
                body={"action": action},
            )
            assert status == 202, body
            await until_final(body["id"])
        install = sent(cp, "InstallCertificate")[0]
        assert install["certificate_type"] == "CentralSystemRootCertificate"
        assert install["certificate"].strip() == ours["pem"].strip()
        delete = sent(cp, "DeleteCertificate")[0]["certificate_hash_data"]
        # The same hashes an OCSP request names a certificate by (cryptography computes them).
        root = x509.load_pem_x509_certificate(ours["pem"].encode())
        request = ocsp.OCSPRequestBuilder().add_certificate(root, root, hashes.SHA256()).build()
        assert delete["hash_algorithm"] == "SHA256"
        assert delete["serial_number"] == format(root.serial_number, "x")
        assert delete["issuer_name_hash"] == request.issuer_name_hash.hex()
        assert delete["issuer_key_hash"] == request.issuer_key_hash.hex()


def test_certificates_ending_soon_are_renewed_once_a_day(settings):
    import datetime as dt

    from django.utils import timezone

    from stations.commands.security import certificates_renew

    settings.PKI_RENEW_DAYS = 30
    now = timezone.now()
    due16 = ChargingStation.objects.create(identity="RENEW-16", protocol="ocpp1.6")
    due201 = ChargingStation.objects.create(identity="RENEW-201", protocol="ocpp2.0.1")
    renewed = ChargingStation.objects.create(identity="RENEW-DONE", protocol="ocpp1.6")

    def certificate(row, serial: str, days: int) -> None:
        StationCertificate.objects.create(
            station=row,
            serial=serial,
            subject=f"CN={row.identity}",
            not_before=now - dt.timedelta(days=300),
            not_after=now + dt.timedelta(days=days),
            pem="-",
        )

    certificate(due16, "a1", 10)
    certificate(due201, "a2", 29)
    certificate(renewed, "a3", 5)
    certificate(renewed, "a4", 300)  # its new certificate: nothing to renew

    assert certificates_renew(now=now) == 2
    asked = {c.station.identity: c for c in Command.objects.select_related("station")}
    assert set(asked) == {"RENEW-16", "RENEW-201"}
    assert asked["RENEW-16"].action == "ExtendedTriggerMessage"
    assert asked["RENEW-16"].payload == {"requestedMessage": "SignChargePointCertificate"}
    assert asked["RENEW-201"].action == "TriggerMessage"
    assert asked["RENEW-201"].payload == {"requestedMessage": "SignChargingStationCertificate"}
    assert certificates_renew(now=now + dt.timedelta(hours=12)) == 0  # once a day at most
    assert certificates_renew(now=now + dt.timedelta(days=1, minutes=1)) == 2
