"""Each authorization status, produced by the case that should produce it, through the real
websocket of a real daphne server, on OCPP 1.6J and 2.0.1."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from sessions import services
from sessions.models import AuthorizationDecision, ChargingSession, IdToken
from stations.models import ChargingStation, Location
from tests.ocpp_client import station

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-station-password-0123"


@dataclass
class Network:
    identity: str
    uids: dict[str, str]


def now_iso(delta: timedelta = timedelta(0)) -> str:
    return (timezone.now() + delta).isoformat().replace("+00:00", "Z")


@pytest.fixture
def network(account: Any) -> Network:
    here = Location.objects.create(name="Here", city="Utrecht")
    elsewhere = Location.objects.create(name="Elsewhere", city="Delft")
    identity = f"CP-AUTH-{uuid.uuid4().hex[:6]}"
    charger = ChargingStation(identity=identity, location=here)
    charger.set_password(PASSWORD)
    charger.save()
    now = timezone.now()
    driver = services.driver_create(account=account, name="Dana", reference="D-1")

    def token(uid: str, **fields: Any) -> IdToken:
        return services.id_token_create(uid=uid, account=account, **fields)

    token("04A1B2C3", driver=driver, visual_number="NL-ACM-000001")
    token("04B10C4D", blocked=True, blocked_reason="reported lost")
    token("04E0E0E0", valid_until=now - timedelta(days=1))
    token("04F0F0F0", valid_from=now + timedelta(days=3))
    group = token("0A0B0C0D", visual_number="fleet group")
    token("04C0FFEE", group=group, valid_until=now + timedelta(days=30))
    blocked_group = token("0B0B0B0B", blocked=True)
    token("04D0D0D0", group=blocked_group)
    token("04CC0001", max_concurrent_sessions=1)
    site_bound = token("04AA0001")
    services.id_token_set_restrictions(token=site_bound, locations=[elsewhere], stations=[])
    token("04BB0001", budget_energy_wh=1000)
    return Network(
        identity=identity,
        uids={
            "valid": "04A1B2C3",
            "blocked": "04B10C4D",
            "expired": "04E0E0E0",
            "future": "04F0F0F0",
            "group": "0A0B0C0D",
            "member": "04C0FFEE",
            "member_of_blocked": "04D0D0D0",
            "concurrent": "04CC0001",
            "elsewhere": "04AA0001",
            "budget": "04BB0001",
            "unknown": "DEADBEEF",
        },
    )


async def call(client: Any, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    message_id = str(uuid.uuid4())
    reply = await client.raw([2, message_id, action, payload])
    assert reply[0] == 3, reply
    return reply[2]


async def authorize(client: Any, uid: str) -> dict[str, Any]:
    if client.protocol == "ocpp1.6":
        return (await call(client, "Authorize", {"idTag": uid}))["idTagInfo"]
    payload = {"idToken": {"idToken": uid, "type": "ISO14443"}}
    return (await call(client, "Authorize", payload))["idTokenInfo"]


async def start(client: Any, uid: str, transaction_id: str) -> dict[str, Any]:
    """Start a transaction with this token; returns the whole response."""
    if client.protocol == "ocpp1.6":
        return await call(
            client,
            "StartTransaction",
            {
                "connectorId": 1,
                "idTag": uid,
                "meterStart": 0,
                "timestamp": now_iso(),
            },
        )
    return await call(
        client,
        "TransactionEvent",
        {
            "eventType": "Started",
            "timestamp": now_iso(),
            "triggerReason": "Authorized",
            "seqNo": 0,
            "transactionInfo": {"transactionId": transaction_id},
            "evse": {"id": 1, "connectorId": 1},
            "idToken": {"idToken": uid, "type": "ISO14443"},
            "meterValue": [
                {
                    "timestamp": now_iso(),
                    "sampledValue": [
                        {
                            "value": 0,
                            "context": "Transaction.Begin",
                            "measurand": "Energy.Active.Import.Register",
                            "unitOfMeasure": {"unit": "Wh"},
                        },
                    ],
                }
            ],
        },
    )


async def stop(client: Any, transaction_id: str | int, meter_stop: int) -> None:
    if client.protocol == "ocpp1.6":
        await call(
            client,
            "StopTransaction",
            {
                "transactionId": transaction_id,
                "meterStop": meter_stop,
                "timestamp": now_iso(),
            },
        )
        return
    await call(
        client,
        "TransactionEvent",
        {
            "eventType": "Ended",
            "timestamp": now_iso(),
            "triggerReason": "StopAuthorized",
            "seqNo": 1,
            "transactionInfo": {"transactionId": transaction_id, "stoppedReason": "Local"},
            "evse": {"id": 1, "connectorId": 1},
            "meterValue": [
                {
                    "timestamp": now_iso(),
                    "sampledValue": [
                        {
                            "value": meter_stop,
                            "context": "Transaction.End",
                            "measurand": "Energy.Active.Import.Register",
                            "unitOfMeasure": {"unit": "Wh"},
                        },
                    ],
                }
            ],
        },
    )


# What each case must answer: (1.6 status, 2.0.1 status).
EXPECTED = {
    "valid": ("Accepted", "Accepted"),
    "blocked": ("Blocked", "Blocked"),
    "expired": ("Expired", "Expired"),
    "unknown": ("Invalid", "Invalid"),
    "member": ("Accepted", "Accepted"),
    "member_of_blocked": ("Blocked", "Blocked"),
    "elsewhere": ("Invalid", "NotAtThisLocation"),
    "future": ("Invalid", "NotAtThisTime"),
}


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_each_status_from_its_case(
    daphne_server: Any, network: Network, protocol: str
) -> None:
    v16 = protocol == "ocpp1.6"
    uids = network.uids
    async with station(
        daphne_server.ws_url, network.identity, protocol=protocol, password=PASSWORD
    ) as client:
        answers = {case: await authorize(client, uids[case]) for case in EXPECTED}
        # Chargers compare uids case-insensitively; so do we.
        lower_case = await authorize(client, uids["valid"].lower())

        # Concurrency: the token's one allowed session is running.
        first = await start(client, uids["concurrent"], "tx-concurrent")
        concurrent = await authorize(client, uids["concurrent"])

        # Budget: 1,000 Wh a month, and a finished session used 1,500 Wh.
        started = await start(client, uids["budget"], "tx-budget")
        await stop(client, started["transactionId"] if v16 else "tx-budget", 1500)
        budget = await authorize(client, uids["budget"])

    for case, statuses in EXPECTED.items():
        assert answers[case]["status"] == statuses[0 if v16 else 1], case
    assert lower_case["status"] == "Accepted"
    assert (first["idTagInfo"] if v16 else first["idTokenInfo"])["status"] == "Accepted"
    assert concurrent["status"] == "ConcurrentTx"
    assert budget["status"] == ("Blocked" if v16 else "NoCredit")

    # Group membership is told to the charger; the member's expiry too.
    if v16:
        assert answers["member"]["parentIdTag"] == uids["group"]
        # The token's valid_until: 30 days from now (next year in December).
        expiry = timezone.now() + timedelta(days=30)
        assert answers["member"]["expiryDate"].startswith(expiry.strftime("%Y-%m-%d"))
        assert answers["expired"]["expiryDate"]
        assert "parentIdTag" not in answers["valid"]
    else:
        assert answers["member"]["groupIdToken"]["idToken"] == uids["group"]
        assert answers["member"]["cacheExpiryDateTime"]
        assert "groupIdToken" not in answers["valid"]

    # Every answer was recorded, with the reason behind it.
    decisions = [
        row
        async for row in AuthorizationDecision.objects.filter(
            station__identity=network.identity
        ).values_list("uid", "status", "reason")
    ]
    reasons = {(uid, status): reason for uid, status, reason in decisions}
    assert reasons[(uids["blocked"], "Blocked")] == "token blocked: reported lost"
    assert reasons[(uids["member_of_blocked"], "Blocked")] == "group blocked"
    assert reasons[(uids["unknown"], "Invalid")] == "unknown token"
    assert reasons[(uids["elsewhere"], "NotAtThisLocation")].startswith("not allowed at station")
    assert reasons[(uids["future"], "NotAtThisTime")].startswith("token valid from")
    assert reasons[(uids["concurrent"], "ConcurrentTx")] == "1 session(s) already active"
    assert reasons[(uids["budget"], "NoCredit")].startswith("energy budget used up: 1500")


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_start_with_a_blocked_token_is_stored_and_answered(
    daphne_server: Any,
    network: Network,
    protocol: str,
) -> None:
    async with station(
        daphne_server.ws_url, network.identity, protocol=protocol, password=PASSWORD
    ) as client:
        response = await start(client, network.uids["blocked"], "tx-blocked")

    session = await sync_to_async(ChargingSession.objects.get)(station__identity=network.identity)
    assert session.auth_status == "Blocked"
    assert session.id_token_id is not None
    assert session.needs_review
    assert "started with a Blocked token: held for review, not billed" in session.anomalies
    if protocol == "ocpp1.6":
        assert response["idTagInfo"]["status"] == "Blocked"
        assert response["transactionId"] == session.ocpp16_transaction_id
    else:
        assert response["idTokenInfo"]["status"] == "Blocked"
        assert session.transaction_id == "tx-blocked"


async def test_group_concurrency_limit_counts_all_members(
    daphne_server: Any,
    network: Network,
) -> None:
    """A fleet group allowing one session at a time refuses a second member's card."""

    @sync_to_async
    def fleet() -> None:
        group = IdToken.objects.get(uid="0A0B0C0D")
        services.id_token_update(token=group, data={"max_concurrent_sessions": 1})
        services.id_token_create(uid="04C0FFE2", group=group)

    await fleet()
    async with station(
        daphne_server.ws_url, network.identity, protocol="ocpp1.6", password=PASSWORD
    ) as client:
        await start(client, network.uids["member"], "")
        second = await authorize(client, "04C0FFE2")
    assert second["status"] == "ConcurrentTx"
    assert second["parentIdTag"] == "0A0B0C0D"
