"""The roaming panel in a real browser: an Operator clicks "give a registration token" and
the token A shown opens our versions on the live server; then registers with a partner
platform from its versions URL and token with the Register button."""

from __future__ import annotations

import re
import urllib.request

import pytest
from asgiref.sync import sync_to_async
from playwright.async_api import expect

from tests.cpo.panel.conftest import browser_page, login, make_staff  # noqa: F401
from tests.roaming.conftest import LoopbackPlatform

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live, pytest.mark.browser]


def _partner() -> int:
    from roaming.models import OurParty, Partner

    party = OurParty.objects.create(
        country_code="NL", party_id="CPO", name="CPO Operations", is_default=True
    )
    partner = Partner.objects.create(name="eMSP Browser")
    partner.allowed_parties.add(party)
    return partner.pk


def _versions_status(base: str, token: str) -> int:
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{base}/ocpi/versions", headers={"Authorization": f"Token {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        return int(answer.status)


def _status(pk: int) -> str:
    from roaming.models import Partner

    return Partner.objects.get(pk=pk).status


async def test_an_operator_gives_token_a_and_registers_with_a_partner(
    daphne_server,
    roles,  # noqa: ARG001
    browser_page,  # noqa: F811
) -> None:
    page = browser_page
    base = daphne_server.http_url
    await sync_to_async(make_staff)("operator-roaming", "Operators")
    pk = await sync_to_async(_partner)()

    await login(page, base, "operator-roaming")
    await page.goto(f"{base}/admin/roaming/partner/")
    row = page.locator("#result_list tbody tr", has_text="eMSP Browser")
    await row.locator("input.action-select").check()
    await page.select_option("select[name=action]", "give_registration_token")
    await page.click("button[name=index]")
    message = page.locator(".messagelist")
    await expect(message).to_contain_text("shown once, single use")
    found = re.search(r"single use\): (\S+) —", await message.inner_text())
    assert found
    assert await sync_to_async(_versions_status)(base, found.group(1)) == 200

    platform = LoopbackPlatform(token="their-token-B")
    try:
        await page.goto(f"{base}/admin/roaming/partner/{pk}/change/")
        await page.click("text=Register with this partner")
        await page.fill("input[name=versions_url]", platform.versions_url)
        await page.fill("input[name=token]", platform.token)
        await page.click("#register-form input[type=submit]")
        await expect(page.locator(".messagelist")).to_contain_text("Registered with eMSP Browser")
    finally:
        platform.stop()
    assert await sync_to_async(_status)(pk) == "REGISTERED"


def _dead_push() -> tuple[int, int]:
    """A registered partner with one OCPI push that became a dead letter."""
    from django.db import transaction
    from django.utils import timezone

    from cpo.lib.sealing import seal
    from cpo.outbox.models import OutboxMessage
    from cpo.outbox.services import outbox_enqueue
    from roaming.models import OurParty, Partner

    party = OurParty.objects.create(
        country_code="NL", party_id="CPO", name="CPO Operations", is_default=True
    )
    partner = Partner.objects.create(
        name="eMSP Pushed",
        status=Partner.Status.REGISTERED,
        version="2.2.1",
        their_token_sealed=seal("their-token"),
        registered_at=timezone.now(),
    )
    partner.allowed_parties.add(party)
    with transaction.atomic():
        message = outbox_enqueue(
            destination_kind="ocpi",
            destination_ref=str(partner.pk),
            url="http://127.0.0.1:9/2.2.1/locations/NL/CPO/1",
            method="PUT",
            body={"id": "1"},
            topic="locations.location",
        )
    OutboxMessage.objects.filter(pk=message.pk).update(
        status=OutboxMessage.Status.DEAD, attempts=20, last_error="OCPI 2001: refused"
    )
    return partner.pk, message.pk


def _message_status(pk: int) -> tuple[str, int]:
    from cpo.outbox.models import OutboxMessage

    message = OutboxMessage.objects.get(pk=pk)
    return message.status, message.attempts


async def test_an_operator_sees_a_partners_dead_letter_and_delivers_it_again(
    daphne_server,
    roles,  # noqa: ARG001
    browser_page,  # noqa: F811
) -> None:
    page = browser_page
    base = daphne_server.http_url
    await sync_to_async(make_staff)("operator-pushes", "Operators")
    partner_pk, message_pk = await sync_to_async(_dead_push)()

    await login(page, base, "operator-pushes")
    await page.goto(f"{base}/admin/roaming/partner/{partner_pk}/change/")
    lag = page.locator(".field-push_lag")
    await expect(lag).to_contain_text("Dead letters: 1")
    await lag.get_by_role("link", name="1").last.click()
    row = page.locator("#result_list tbody tr", has_text="eMSP Pushed")
    await expect(row).to_contain_text("dead")
    await expect(row).to_contain_text("ocpi eMSP Pushed")
    await row.locator("input.action-select").check()
    await page.select_option("select[name=action]", "redeliver")
    await page.click("button[name=index]")
    await expect(page.locator("ul.messagelist")).to_be_visible()

    status, attempts = await sync_to_async(_message_status)(message_pk)
    assert status in ("pending", "delivering")
    assert attempts <= 1
