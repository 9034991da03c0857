"""The operator panel for tokens, drivers, accounts and sessions."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from sessions import services
from sessions.models import (
    AuthorizationDecision,
    ChargingSession,
    IdToken,
    MeterSample,
    TransactionEventRecord,
)
from stations.models import ChargingStation

pytestmark = pytest.mark.django_db


@pytest.fixture
def cards(account: Any) -> dict[str, IdToken]:
    driver = services.driver_create(account=account, name="Dana Driver", reference="D-1")
    return {
        "dana": services.id_token_create(
            uid="04A1B2C3", driver=driver, visual_number="NL-ACM-000001"
        ),
        "spare": services.id_token_create(
            uid="04FFEE01", account=account, visual_number="NL-ACM-000002"
        ),
        "other": services.id_token_create(uid="0499AA01", visual_number="XX-123"),
    }


def changelist(client: Any, **params: str) -> Any:
    return client.get(reverse("admin:charging_idtoken_changelist"), params)


def listed(response: Any) -> set[str]:
    return {token.uid for token in response.context["cl"].result_list}


def test_search_by_uid_in_any_case_and_by_visual_number(
    client: Any, operator: Any, cards: dict[str, IdToken]
) -> None:
    client.force_login(operator)
    assert listed(changelist(client, q="04a1b2")) == {"04A1B2C3"}
    assert listed(changelist(client, q="04A1B2C3")) == {"04A1B2C3"}
    assert listed(changelist(client, q="NL-ACM-000002")) == {"04FFEE01"}
    assert listed(changelist(client, q="nl-acm")) == {"04A1B2C3", "04FFEE01"}
    assert listed(changelist(client, q="nothing-like-it")) == set()


def test_changelist_queries_do_not_grow_with_rows(
    client: Any,
    operator: Any,
    account: Any,
    django_assert_max_num_queries: Any,
) -> None:
    for n in range(30):
        services.id_token_create(uid=f"{0x04000000 + n:08X}", account=account)
    client.force_login(operator)
    with django_assert_max_num_queries(15):
        assert changelist(client).status_code == 200


def test_block_action_blocks_and_tells_the_local_list_sync(
    client: Any,
    operator: Any,
    cards: dict[str, IdToken],
    token_changes: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    client.force_login(operator)
    chosen = [cards["dana"].pk, cards["spare"].pk]
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:charging_idtoken_changelist"),
            {"action": "block_tokens", "_selected_action": chosen},
            follow=True,
        )

    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    assert messages == ["Blocked 2 token(s); 0 already were."]
    assert set(IdToken.objects.filter(blocked=True).values_list("pk", flat=True)) == set(chosen)
    assert IdToken.objects.get(pk=cards["dana"].pk).blocked_reason == "blocked by olivia-operator"
    assert token_changes.token_ids == set(chosen)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:charging_idtoken_changelist"),
            {"action": "unblock_tokens", "_selected_action": [cards["dana"].pk]},
            follow=True,
        )
    assert not IdToken.objects.get(pk=cards["dana"].pk).blocked
    assert token_changes.calls[-1] == [cards["dana"].pk]


def test_support_sees_tokens_but_cannot_block(
    client: Any, support: Any, cards: dict[str, IdToken]
) -> None:
    client.force_login(support)
    response = changelist(client)
    assert response.status_code == 200
    assert "block_tokens" not in response.context["cl"].model_admin.get_actions(
        response.wsgi_request
    )
    client.post(
        reverse("admin:charging_idtoken_changelist"),
        {"action": "block_tokens", "_selected_action": [cards["dana"].pk]},
    )
    assert not IdToken.objects.filter(blocked=True).exists()


def test_token_added_in_the_panel_goes_through_the_service(
    client: Any,
    operator: Any,
    account: Any,
    token_changes: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    client.force_login(operator)
    station = ChargingStation.objects.create(identity="CP-ADMIN-1")
    form = {
        "uid": "04ABCDEF",
        "type": "ISO14443",
        "visual_number": "NEW-1",
        "account": account.pk,
        "in_local_list": "on",
        "budget_period": "month",
        "allowed_stations": [station.pk],
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:charging_idtoken_add"), form)
    assert response.status_code == 302, response.context["adminform"].form.errors
    token = IdToken.objects.get(uid="04ABCDEF")
    assert list(token.allowed_stations.all()) == [station]
    assert token.pk in token_changes.token_ids

    # The same card typed in lower case is refused on the form, not with a server error.
    form["uid"] = "04abcdef"
    response = client.post(reverse("admin:charging_idtoken_add"), form)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["uid"] == [
        "A token with this uid and type already exists."
    ]

    # A validity change is announced; a note on the card is not.
    change = reverse("admin:charging_idtoken_change", args=[token.pk])
    form.pop("uid"), form.pop("type")
    token_changes.calls.clear()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(change, {**form, "visual_number": "NEW-1b"})
    assert token_changes.calls == []
    with django_capture_on_commit_callbacks(execute=True):
        client.post(change, {**form, "valid_until_0": "2030-01-01", "valid_until_1": "00:00:00"})
    assert token_changes.calls == [[token.pk]]
    valid_until = IdToken.objects.get(pk=token.pk).valid_until
    assert valid_until is not None
    assert valid_until.year == 2030


def test_driver_page_lists_their_sessions(
    client: Any, operator: Any, cards: dict[str, IdToken]
) -> None:
    station = ChargingStation.objects.create(identity="CP-DRV-1")
    start = timezone.now() - timedelta(hours=2)
    session = ChargingSession.objects.create(
        station=station,
        transaction_id="77",
        id_token=cards["dana"],
        id_tag="04A1B2C3",
        started_at=start,
        ended_at=start + timedelta(minutes=90),
        status="completed",
        energy_wh=Decimal("12345"),
    )
    ChargingSession.objects.create(
        station=station, transaction_id="78", id_token=cards["other"], started_at=start
    )
    client.force_login(operator)
    driver = cards["dana"].driver
    assert driver is not None

    page = client.get(reverse("admin:charging_driver_change", args=[driver.pk]))
    html = page.content.decode()
    assert "12.345 kWh" in html
    assert "1:30:00" in html
    assert "CP-DRV-1" in html

    sessions = client.get(
        reverse("admin:charging_chargingsession_changelist"), {"driver": driver.pk}
    )
    assert list(sessions.context["cl"].result_list) == [session]


def test_sessions_live_and_past_read_only(
    client: Any, operator: Any, cards: dict[str, IdToken]
) -> None:
    station = ChargingStation.objects.create(identity="CP-LIVE-1")
    now = timezone.now()
    live = ChargingSession.objects.create(
        station=station,
        transaction_id="1",
        started_at=now - timedelta(minutes=5),
        energy_wh=Decimal("1500"),
    )
    past = ChargingSession.objects.create(
        station=station,
        transaction_id="2",
        started_at=now - timedelta(days=1),
        ended_at=now - timedelta(days=1) + timedelta(hours=1),
        status="completed",
    )
    MeterSample.objects.create(
        session=live,
        station=station,
        timestamp=now,
        value=Decimal("1500"),
        raw_value="1500",
        unit="Wh",
    )
    TransactionEventRecord.objects.create(
        session=live,
        station=station,
        transaction_id="1",
        seq_no=0,
        event_type="Started",
        trigger_reason="Authorized",
        timestamp=now,
    )
    AuthorizationDecision.objects.create(
        station=station,
        id_token=cards["dana"],
        uid="04A1B2C3",
        context="Authorize",
        status="Accepted",
        reason="valid",
    )
    client.force_login(operator)
    url = reverse("admin:charging_chargingsession_changelist")
    assert list(client.get(url, {"live": "live"}).context["cl"].result_list) == [live]
    assert list(client.get(url, {"live": "past"}).context["cl"].result_list) == [past]
    assert "1.500" in client.get(url, {"live": "live"}).content.decode()

    detail = client.get(reverse("admin:charging_chargingsession_change", args=[live.pk]))
    assert detail.status_code == 200
    assert not detail.context["has_change_permission"]
    for name in ("metersample", "transactioneventrecord", "authorizationdecision"):
        page = client.get(reverse(f"admin:charging_{name}_changelist"))
        assert page.status_code == 200, name
        assert len(page.context["cl"].result_list) == 1
    assert client.get(reverse("admin:charging_metersample_add")).status_code == 403
    assert client.get(reverse("admin:charging_chargingsession_add")).status_code == 403


def test_the_session_page_shows_what_the_integrity_checks_found(client: Any, operator: Any) -> None:
    station = ChargingStation.objects.create(identity="CP-FLAGS-1")
    now = timezone.now()
    flagged = ChargingSession.objects.create(
        station=station,
        transaction_id="1",
        status="completed",
        started_at=now - timedelta(hours=2),
        ended_at=now - timedelta(hours=1),
        rating_status="needs_review",
        is_estimated=True,
        anomalies=[
            "started with a Blocked token: held for review, not billed",
            "meter reset at 2026-10-01T10:30:00+00:00: register went back from 12061 to 20 Wh",
        ],
    )
    MeterSample.objects.create(
        session=flagged, station=station, timestamp=now, value=Decimal(9), after_stop=True
    )
    ChargingSession.objects.create(station=station, transaction_id="2", started_at=now)
    client.force_login(operator)
    url = reverse("admin:charging_chargingsession_changelist")
    page = client.get(url).content.decode()
    assert "held for review" in page
    assert "2 anomalies" in page
    for value in ("flagged", "review", "estimated"):
        listed = client.get(url, {"integrity": value}).context["cl"].result_list
        assert list(listed) == [flagged], value
    detail = client.get(reverse("admin:charging_chargingsession_change", args=[flagged.pk]))
    body = detail.content.decode()
    assert "<li>started with a Blocked token: held for review, not billed</li>" in body
    assert "register went back from 12061 to 20 Wh" in body
    assert "1 kept, not counted" in body


def test_the_account_and_site_forms_refuse_countries_that_do_not_exist(admin_client) -> None:
    """Issue 20, finding 15: ISO 3166-1 from the standard's list, not two letters of any kind."""
    from django.urls import reverse

    from sessions.models import CustomerAccount
    from stations.models import Location

    account = {
        "name": "Zed",
        "reference": "",
        "kind": "person",
        "is_active": "on",
        "country": "ZZ",
        "currency": "EUR",
        "billing_period": "monthly",
        "drivers-TOTAL_FORMS": "0",
        "drivers-INITIAL_FORMS": "0",
    }
    response = admin_client.post(reverse("admin:charging_customeraccount_add"), account)
    assert response.status_code == 200
    assert "is not an ISO 3166-1 alpha-2 country code" in response.content.decode()
    assert not CustomerAccount.objects.filter(name="Zed").exists()
    account["country"] = "SE"
    assert (
        admin_client.post(reverse("admin:charging_customeraccount_add"), account).status_code == 302
    )

    site = {"name": "Depot", "country": "NL", "time_zone": "Europe/Amsterdam", "publish": "on"}
    response = admin_client.post(reverse("admin:stations_location_add"), site)
    assert "is not an ISO 3166-1 alpha-3 country code" in response.content.decode()
    site["country"] = "NLD"
    assert admin_client.post(reverse("admin:stations_location_add"), site).status_code == 302
    assert Location.objects.get(name="Depot").country == "NLD"
