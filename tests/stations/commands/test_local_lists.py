"""Local authorization lists: a blocked token reaches the stations holding it by a
differential SendLocalList that real OCPP clients receive; a mismatch resyncs in full."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from tests.ocpp_client import station
from tests.stations.conftest import until, until_online

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]


class Answers:
    """An awaitable answer that changes: the first ones in order, then the last for good."""

    def __init__(self, *answers):
        self.answers = list(answers)

    def __await__(self):
        async def next_answer():
            return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

        return next_answer().__await__()


def _lists(client) -> list[dict]:
    return [
        json.loads(f)[3]
        for f in client.connection.received
        if json.loads(f)[0] == 2 and json.loads(f)[2] == "SendLocalList"
    ]


async def test_blocked_token_reaches_local_lists_by_differential_update(
    daphne_server, celery_worker, make_station
):
    from ocpp.v201 import call_result as result201

    from sessions import services as tokens
    from stations.commands.local_lists import local_list_sync
    from stations.commands.models import LocalAuthList

    s16 = await sync_to_async(make_station)("LL-16")
    s201 = await sync_to_async(make_station)("LL-201", "ocpp2.0.1")
    elsewhere = await sync_to_async(make_station)("LL-ELSEWHERE")

    def make_tokens() -> tuple:
        fleet = tokens.id_token_create(uid="FLEET-1", type="Central")
        card = tokens.id_token_create(uid="04AABBCC", group=fleet)
        local = tokens.id_token_create(uid="04DDEEFF", allowed_stations=[s16])
        tokens.id_token_create(uid="NOT-LISTED", type="Central", in_local_list=False)
        return card, local

    card, local = await sync_to_async(make_tokens)()
    async with (
        station(daphne_server.ws_url, "LL-16") as c16,
        station(daphne_server.ws_url, "LL-201", protocol="ocpp2.0.1") as c201,
    ):
        await until_online(s16.pk)
        await until_online(s201.pk)
        for cs in (s16, s201):
            await sync_to_async(local_list_sync)(station_id=cs.pk)
        await until(lambda: len(_lists(c16)) == 1 and len(_lists(c201)) == 1)
        full16, full201 = _lists(c16)[0], _lists(c201)[0]
        assert full16["updateType"] == "Full"
        assert full16["listVersion"] == 1
        assert {e["idTag"] for e in full16["localAuthorizationList"]} == {
            "FLEET-1",
            "04AABBCC",
            "04DDEEFF",
        }
        assert full201["updateType"] == "Full"
        assert full201["versionNumber"] == 1
        assert {e["idToken"]["idToken"] for e in full201["localAuthorizationList"]} == {
            "FLEET-1",
            "04AABBCC",
        }
        await until(lambda: LocalAuthList.objects.filter(version=1, status="in_sync").count() == 2)

        # An operator blocks the card in the panel: a differential update to both.
        def block_in_panel() -> None:
            from django.test import Client

            from cpo.models import User

            operator = User.objects.create_superuser("panel-operator", "op@example.invalid", "pw")
            browser = Client()
            browser.force_login(operator)
            response = browser.post(
                "/admin/charging/idtoken/",
                {"action": "block_tokens", "_selected_action": [card.pk]},
            )
            assert response.status_code == 302

        await sync_to_async(block_in_panel)()
        await until(lambda: len(_lists(c16)) == 2 and len(_lists(c201)) == 2, 30)
        assert _lists(c16)[1] == {
            "listVersion": 2,
            "updateType": "Differential",
            "localAuthorizationList": [
                {"idTag": "04AABBCC", "idTagInfo": {"status": "Blocked", "parentIdTag": "FLEET-1"}}
            ],
        }
        assert _lists(c201)[1] == {
            "versionNumber": 2,
            "updateType": "Differential",
            "localAuthorizationList": [
                {
                    "idToken": {"idToken": "04AABBCC", "type": "ISO14443"},
                    "idTokenInfo": {
                        "status": "Blocked",
                        "groupIdToken": {"idToken": "FLEET-1", "type": "Central"},
                    },
                }
            ],
        }
        await until(lambda: LocalAuthList.objects.filter(version=2, status="in_sync").count() == 2)

        # Blocking the station-restricted token concerns only the 1.6 station.
        await sync_to_async(tokens.id_token_block)(token=local)
        await until(lambda: len(_lists(c16)) == 3, 30)
        assert _lists(c16)[2]["localAuthorizationList"] == [
            {"idTag": "04DDEEFF", "idTagInfo": {"status": "Blocked"}}
        ]

        # The 2.0.1 station lost its list: VersionMismatch, then a full resync.
        c201.cp.responses["SendLocalList"] = Answers(
            result201.SendLocalList(status="VersionMismatch"),
            result201.SendLocalList(status="Accepted"),
        )
        await sync_to_async(tokens.id_token_unblock)(token=card)
        await until(lambda: len(_lists(c201)) == 4, 30)
        differential, full = _lists(c201)[2:]
        assert differential["updateType"] == "Differential"
        assert full["updateType"] == "Full"
        assert full["versionNumber"] > differential["versionNumber"]
        assert {
            e["idToken"]["idToken"]: e["idTokenInfo"]["status"]
            for e in full["localAuthorizationList"]
        } == {"FLEET-1": "Accepted", "04AABBCC": "Accepted"}
        state = await until(
            lambda: LocalAuthList.objects.filter(
                station=s201, status="in_sync", version=full["versionNumber"]
            ).first(),
            30,
        )
        assert state.entries["04AABBCC"]["status"] == "Accepted"
        await until(lambda: len(_lists(c16)) == 4, 30)
    # Never-synced and offline stations are left alone.
    assert not await sync_to_async(LocalAuthList.objects.filter(station=elsewhere).exists)()
