"""Jobs over many stations: diagnostics files that really upload to the back office, and a
firmware rollout with a concurrency limit, retries and per-station progress."""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from tests.ocpp_client import station
from tests.stations.conftest import http, until, until_online

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]


def _call_of(client, action: str, count: int = 1):
    calls = [payload for name, payload in client.cp.received_calls if name == action]
    return calls[count - 1] if len(calls) >= count else None


def _multipart(filename: str, content: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


async def test_diagnostics_job_files_upload_to_the_back_office(
    daphne_server, celery_worker, make_station, api_token
):
    from stations.commands.models import DiagnosticsUpload, JobTarget

    old = await sync_to_async(make_station)("DIAG-16")
    new = await sync_to_async(make_station)("DIAG-201", "ocpp2.0.1")
    log_16 = b"2030-01-01 boot ok\n" * 500
    log_201 = b"\x00\x01binary log\xff" * 300
    async with (
        station(daphne_server.ws_url, "DIAG-16") as c16,
        station(daphne_server.ws_url, "DIAG-201", protocol="ocpp2.0.1") as c201,
    ):
        await until_online(old.pk)
        await until_online(new.pk)
        status, job = await http(
            "POST",
            f"{daphne_server.http_url}/api/jobs/create/",
            token=api_token,
            body={"kind": "diagnostics", "name": "collect", "stations": [old.pk, new.pk]},
        )
        assert status == 201, job
        assert job["progress"]["total"] == 2

        get_diagnostics = await until(lambda: _call_of(c16, "GetDiagnostics"), 30)
        location = get_diagnostics["location"]
        assert location.startswith(f"{daphne_server.http_url}/uploads/diagnostics/")
        # 1.6 gives a directory: the station appends its file name and PUTs the raw file.
        status, _ = await http(
            "PUT",
            location + "station.log",
            body=log_16,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert status == 201
        # The URL is spent.
        status, _ = await http(
            "PUT",
            location + "again.log",
            body=b"x",
            headers={"Content-Type": "application/octet-stream"},
        )
        assert status == 410
        await c16.cp.call(call16.DiagnosticsStatusNotification(status="Uploading"))
        await c16.cp.call(call16.DiagnosticsStatusNotification(status="Uploaded"))

        get_log = await until(lambda: _call_of(c201, "GetLog"), 30)
        assert get_log["log_type"] == "DiagnosticsLog"
        body, content_type = _multipart("evse.bin", log_201)
        status, _ = await http(
            "POST",
            get_log["log"]["remote_location"],
            body=body,
            headers={"Content-Type": content_type},
        )
        assert status == 201
        await c201.cp.call(
            call201.LogStatusNotification(status="Uploaded", request_id=get_log["request_id"])
        )

        detail_url = f"{daphne_server.http_url}/api/jobs/{job['id']}/"

        async def finished() -> dict | None:
            status, detail = await http("GET", detail_url, token=api_token)
            assert status == 200
            return detail if detail["status"] == "completed" else None

        detail = None
        for _ in range(100):
            detail = await finished()
            if detail:
                break
            await asyncio.sleep(0.1)
        assert detail is not None, "job did not complete"
        assert detail["progress"]["succeeded"] == 2
        by_station = {t["station_identity"]: t for t in detail["targets"]}
        assert by_station["DIAG-16"]["progress"] == "Uploaded"
        assert by_station["DIAG-16"]["upload"]["filename"] == "station.log"
        assert by_station["DIAG-201"]["upload"]["size"] == len(log_201)

    def stored() -> list[tuple[str, bytes, int, int]]:
        return [
            (
                u.station.identity,
                Path(u.file.path).read_bytes(),
                u.job_target.job_id,
                u.job_target.station_id,
            )
            for u in DiagnosticsUpload.objects.exclude(uploaded_at=None).select_related(
                "station", "job_target"
            )
        ]

    files = {
        identity: (content, job_id)
        for identity, content, job_id, _ in await sync_to_async(stored)()
    }
    assert files["DIAG-16"] == (log_16, job["id"])
    assert files["DIAG-201"] == (log_201, job["id"])
    statuses = await sync_to_async(
        lambda: set(JobTarget.objects.values_list("status", flat=True))
    )()
    assert statuses == {"succeeded"}


async def test_upload_url_refuses_oversized_and_unknown_files(daphne_server, make_station):
    from stations.commands.uploads import diagnostics_upload_create, upload_url

    cs = await sync_to_async(make_station)("DIAG-LIMIT")

    def small_upload() -> str:
        upload = diagnostics_upload_create(station=cs)
        upload.max_bytes = 100
        upload.save()
        return upload_url(upload, base_url=daphne_server.http_url)

    url = await sync_to_async(small_upload)()
    status, _ = await http(
        "POST", url, body=b"x" * 101, headers={"Content-Type": "application/octet-stream"}
    )
    assert status == 413
    status, _ = await http(
        "POST", url + "../nothing/", body=b"x", headers={"Content-Type": "application/octet-stream"}
    )
    assert status == 404
    status, _ = await http(
        "POST", url, body=b"x" * 100, headers={"Content-Type": "application/octet-stream"}
    )
    assert status == 201


async def test_firmware_rollout_with_concurrency_retries_and_progress(
    daphne_server, celery_worker, make_station
):
    from stations.commands.jobs import job_create
    from stations.commands.models import Job, JobTarget

    identities = ["FW-1", "FW-2", "FW-3", "FW-4"]
    stations = [
        await sync_to_async(make_station)(
            identity, "ocpp2.0.1" if i % 2 else "ocpp1.6", model="Wallbox X"
        )
        for i, identity in enumerate(identities)
    ]
    await sync_to_async(make_station)("FW-OTHER-MODEL", model="Other")
    async with (
        station(daphne_server.ws_url, "FW-1") as c1,
        station(daphne_server.ws_url, "FW-2", protocol="ocpp2.0.1") as c2,
        station(daphne_server.ws_url, "FW-3") as c3,
        station(daphne_server.ws_url, "FW-4", protocol="ocpp2.0.1") as c4,
    ):
        clients = {"FW-1": c1, "FW-2": c2, "FW-3": c3, "FW-4": c4}
        for cs in stations:
            await until_online(cs.pk)
        job = await sync_to_async(job_create)(
            kind=Job.Kind.FIRMWARE,
            station_model="wallbox x",
            concurrency=2,
            max_attempts=2,
            parameters={
                "location": "https://fw.example/wallbox-2.0.bin",
                "retrieve_at": "2030-01-01T00:00:00Z",
            },
        )

        def targets() -> dict[str, JobTarget]:
            return {
                t.station.identity: t
                for t in JobTarget.objects.filter(job=job).select_related("station")
            }

        assert set(await sync_to_async(targets)()) == set(identities)

        def updates() -> list[str]:
            return [i for i, c in clients.items() if _call_of(c, "UpdateFirmware")]

        first = await until(lambda: updates() if len(updates()) == 2 else None, 30)
        await asyncio.sleep(0.5)
        assert len(updates()) == 2, "concurrency limit exceeded"

        async def report(identity: str, status: str) -> None:
            client = clients[identity]
            if client.protocol == "ocpp1.6":
                await client.cp.call(call16.FirmwareStatusNotification(status=status))
            else:
                request_id = _call_of(
                    client,
                    "UpdateFirmware",
                    len([1 for a, _ in client.cp.received_calls if a == "UpdateFirmware"]),
                )["request_id"]
                await client.cp.call(
                    call201.FirmwareStatusNotification(status=status, request_id=request_id)
                )

        a, b = first
        await report(a, "Downloading")
        await until(lambda: targets()[a].progress == "Downloading")
        await report(a, "Installed")
        # b fails once and is retried.
        await report(b, "DownloadFailed")
        await until(
            lambda: len([1 for x, _ in clients[b].cp.received_calls if x == "UpdateFirmware"]) == 2,
            30,
        )
        rest = await until(lambda: [i for i in updates() if i not in first] or None, 30)
        await report(b, "Installed")
        for identity in rest:
            await report(identity, "Installed")
        remaining = [i for i in identities if i not in first and i not in rest]
        for identity in remaining:
            await until(functools.partial(_call_of, clients[identity], "UpdateFirmware"), 30)
            await report(identity, "Installed")

        def job_state() -> tuple[str, dict[str, tuple[str, int, str]]]:
            return Job.objects.get(pk=job.pk).status, {
                i: (t.status, t.attempts, t.progress) for i, t in targets().items()
            }

        state = await until(lambda: (s := job_state())[0] == "completed" and s, 30)
        assert {i: s[0] for i, s in state[1].items()} == dict.fromkeys(identities, "succeeded")
        assert state[1][b][1] == 2
        assert all(s[2] == "Installed" for s in state[1].values())
        first_update = _call_of(c1, "UpdateFirmware")
        assert first_update == {
            "location": "https://fw.example/wallbox-2.0.bin",
            "retrieve_date": "2030-01-01T00:00:00Z",
        }
        assert json.dumps(_call_of(c2, "UpdateFirmware")["firmware"]["location"]).count("wallbox")


async def test_upload_tokens_stay_out_of_the_access_log_and_the_request_log(
    daphne_server, make_station
):
    from stations.commands.uploads import diagnostics_upload_create, upload_url

    cs = await sync_to_async(make_station)("DIAG-LOG")

    def new_upload() -> tuple[str, str]:
        upload = diagnostics_upload_create(station=cs)
        return upload.token, upload_url(upload, base_url=daphne_server.http_url)

    token, url = await sync_to_async(new_upload)()
    octets = {"Content-Type": "application/octet-stream"}
    assert (await http("POST", url + "diag.log", body=b"log", headers=octets))[0] == 201
    # Spent (410) and unknown (404): Django's request log names the path of each.
    assert (await http("POST", url, body=b"again", headers=octets))[0] == 410
    unknown = url.replace(token, "not-a-token-but-still-a-secret")
    assert (await http("POST", unknown, body=b"x", headers=octets))[0] == 404

    def logged() -> str:
        return daphne_server.log.read_text(errors="replace")

    await until(lambda: logged().count("/uploads/diagnostics/[token]/") >= 3)
    text = logged()
    assert token not in text
    assert "not-a-token-but-still-a-secret" not in text
    assert "Gone: /uploads/diagnostics/[token]/" in text  # the request log, scrubbed
