"""The station's security page in a real browser: an operator rotates the password, installs
our CSMS root and revokes a certificate, by clicking; the station (the project's OCPP client
on the live daphne) receives the calls, and the database and the next handshakes say what
changed."""

from __future__ import annotations

import json

import pytest
import websockets
from asgiref.sync import sync_to_async
from playwright.async_api import expect

from stations import pki
from stations.commands import security
from stations.commands.models import SecurityChange
from stations.models import ChargingStation, StationCertificate
from tests.cpo.panel.conftest import browser_page, login, make_staff  # noqa: F401 - fixture
from tests.ocpp_client import Client, station
from tests.stations.conftest import until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live, pytest.mark.browser]

PASSWORD = "station-secret-0001"


@sync_to_async
def make_station() -> ChargingStation:
    row = ChargingStation(identity="SEC-UI-1", protocol="ocpp1.6")
    row.set_password(PASSWORD)
    row.save()
    return row


@sync_to_async
def signed_certificate(row: ChargingStation) -> StationCertificate:
    from tests.stations.ocpp.test_security_tls import make_csr

    csr, _ = make_csr(row.identity)
    csr_id, refused = security.csr_receive(station_id=row.pk, csr=csr)
    assert not refused
    return security.csr_sign(csr_id=csr_id)


def calls(cp: Client, action: str) -> list[dict]:
    frames = [json.loads(frame) for frame in cp.connection.received]
    return [f[3] for f in frames if f[0] == 2 and f[2] == action]


async def refused(url: str, password: str) -> bool:
    try:
        async with station(url, "SEC-UI-1", password=password):
            return False
    except websockets.InvalidStatus as error:
        return error.response.status_code in (401, 403)


async def test_an_operator_rotates_the_password_installs_the_root_and_revokes(
    daphne_server,
    roles,  # noqa: ARG001
    browser_page,  # noqa: F811
):
    row = await make_station()
    certificate = await signed_certificate(row)
    await sync_to_async(make_staff)("op-sec", "Operators")
    page = browser_page
    await login(page, daphne_server.http_url, "op-sec")

    async with station(daphne_server.ws_url, "SEC-UI-1", password=PASSWORD) as cp:
        await page.goto(f"{daphne_server.http_url}/admin/stations/chargingstation/{row.pk}/change/")
        await page.click("#station-security-link")
        await expect(page.locator("#security-summary")).to_contain_text("has a password")

        # Rotate: the station gets the new key in hex; once it accepted, the key is the one.
        await page.click("#rotate-password")
        await expect(page.locator(".messagelist")).to_contain_text("A new password was sent")
        await until(lambda: calls(cp, "ChangeConfiguration"), timeout=20)
        sent = calls(cp, "ChangeConfiguration")[0]
        assert sent["key"] == "AuthorizationKey"
        new_password = bytes.fromhex(sent["value"]).decode()
        await until(
            lambda: SecurityChange.objects.filter(
                station=row, status=SecurityChange.Status.APPLIED
            ).exists(),
            timeout=20,
        )
        assert new_password not in await page.content()

        # Install our CSMS root, built from the stored certificate.
        await page.click("button[data-install=csms_root]")
        await expect(page.locator(".messagelist")).to_contain_text("InstallCertificate")
        await until(lambda: calls(cp, "InstallCertificate"), timeout=20)
        install = calls(cp, "InstallCertificate")[0]
        assert install["certificateType"] == "CentralSystemRootCertificate"
        assert install["certificate"].strip() == pki.authority().root_pem.strip()

        # And delete it from the station again: DeleteCertificate with the root's hash data.
        await page.click("button[data-delete=csms_root]")
        await expect(page.locator(".messagelist")).to_contain_text("DeleteCertificate")
        await until(lambda: calls(cp, "DeleteCertificate"), timeout=20)
        deleted = calls(cp, "DeleteCertificate")[0]
        assert deleted["certificateHashData"]["serialNumber"]
        assert deleted["certificateHashData"]["hashAlgorithm"] == "SHA256"

        # Revoke the station's certificate.
        await page.click(f"button[data-revoke='{certificate.serial}']")
        await expect(page.locator(".messagelist")).to_contain_text("revoked")
        await expect(page.locator(f"tr[data-serial='{certificate.serial}']")).to_contain_text(
            "Revoked"
        )
    revoked = await sync_to_async(StationCertificate.objects.get)(pk=certificate.pk)
    assert revoked.status == StationCertificate.Status.REVOKED
    assert revoked.revoked_by == "op-sec"
    # The old password is refused now, the rotated one works.
    assert await refused(daphne_server.ws_url, PASSWORD)
    assert not await refused(daphne_server.ws_url, new_password)

    # Upgrade to profile 2: the station gets our root, then its SecurityProfile; once it
    # accepted both, the stored profile is 2 (and plain ws is refused from then on).
    async with station(daphne_server.ws_url, "SEC-UI-1", password=new_password) as cp:
        await page.reload()
        await page.click("#upgrade-2")
        await expect(page.locator(".messagelist")).to_contain_text(
            "Upgrade to security profile 2 queued"
        )
        await until(
            lambda: any(c["key"] == "SecurityProfile" for c in calls(cp, "ChangeConfiguration")),
            timeout=20,
        )
        upgraded = [c for c in calls(cp, "ChangeConfiguration") if c["key"] == "SecurityProfile"]
        assert upgraded[0]["value"] == "2"
        await until(
            lambda: ChargingStation.objects.get(pk=row.pk).security_profile == 2, timeout=20
        )
    assert page.errors == []
