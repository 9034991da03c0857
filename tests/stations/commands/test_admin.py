"""The operator panel's command page, a form per verb, raw mode, actions and the job page."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.stations.commands.admin_urls")]


@pytest.fixture
def operator(client, django_user_model):
    user = django_user_model.objects.create_superuser("op", "op@example.com", "pw")
    client.force_login(user)
    return client


def test_command_page_sends_a_verb_and_refuses_invalid_raw(operator):
    from stations.commands.models import Command
    from stations.models import ChargingStation

    station = ChargingStation.objects.create(identity="ADMIN-1", protocol="ocpp2.0.1")
    url = f"/admin/stations/chargingstation/{station.pk}/commands/"
    page = operator.get(url)
    assert page.status_code == 200
    assert b"Set display message" in page.content  # 2.0.1 verbs are offered

    form = operator.get(url + "?verb=reset")
    assert b'name="type"' in form.content
    response = operator.post(url + "?verb=reset", {"type": "hard", "evse_id": "1"})
    assert response.status_code == 302
    command = Command.objects.get()
    assert (command.action, command.payload) == ("Reset", {"type": "Immediate", "evseId": 1})
    assert command.origin == "admin"
    assert command.requested_by is not None
    assert command.requested_by.username == "op"

    response = operator.post(
        url + "?verb=raw", {"action": "Reset", "payload": '{"type": "Sideways"}'}
    )
    assert response.status_code == 200
    assert b"schema" in response.content
    assert b"Sideways" in response.content
    assert Command.objects.count() == 1

    history = operator.get(url)
    assert b"Reset" in history.content
    assert b"Queued" in history.content
    assert operator.get(f"/admin/commands/command/{command.pk}/change/").status_code == 200


def test_station_actions_and_1_6_only_verbs(operator):
    from stations.commands.models import Command
    from stations.models import ChargingStation

    old = ChargingStation.objects.create(identity="ADMIN-16", protocol="ocpp1.6")
    page = operator.get(f"/admin/stations/chargingstation/{old.pk}/commands/")
    assert b"Set display message" not in page.content
    response = operator.post(
        "/admin/stations/chargingstation/", {"action": "reset_soft", "_selected_action": [old.pk]}
    )
    assert response.status_code == 302
    assert Command.objects.get().payload == {"type": "Soft"}


def test_job_is_created_from_the_panel_and_shows_progress(operator):
    from stations.commands.models import Job
    from stations.models import ChargingStation

    for i in range(3):
        ChargingStation.objects.create(identity=f"JOB-{i}", protocol="ocpp1.6", model="M1")
    assert operator.get("/admin/commands/job/add/").status_code == 200
    response = operator.post(
        "/admin/commands/job/add/",
        {
            "kind": "firmware",
            "name": "fw 2.0",
            "station_model": "M1",
            "concurrency": "2",
            "max_attempts": "3",
            "target_timeout": "3600",
            "firmware_location": "https://fw.example/2.0.bin",
            "retrieve_at": "2030-01-01 00:00",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    job = Job.objects.get()
    assert job.targets.count() == 3
    assert job.parameters["location"].endswith("2.0.bin")
    page = operator.get(f"/admin/commands/job/{job.pk}/change/")
    assert page.status_code == 200
    assert b"0 ok" in page.content
    assert b"3 total" in page.content
    assert b"JOB-0" in page.content
