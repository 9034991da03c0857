"""The foundation: settings checks, roles, demo data, /healthz, a real Celery worker, and the
run command started and stopped as a newcomer would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
import websockets
from django.contrib.auth.models import Group
from django.test import override_settings

from cpo.apps import check_time_zone
from tests.conftest import ROOT, free_port


def test_time_zone_check_refuses_anything_but_utc():
    assert check_time_zone(None) == []
    with override_settings(TIME_ZONE="Europe/Amsterdam"):
        errors = check_time_zone(None)
    assert [e.id for e in errors] == ["cpo.E001"]


@pytest.mark.django_db
def test_roles_have_least_privileges():
    operators = set(
        Group.objects.get(name="Operators").permissions.values_list("codename", flat=True)
    )
    finance = set(Group.objects.get(name="Finance").permissions.values_list("codename", flat=True))
    support = Group.objects.get(name="Support").permissions.values_list("codename", flat=True)

    assert "change_chargingstation" in operators
    assert "change_idtoken" in operators
    assert all(codename.startswith("view_") for codename in support)
    assert "view_chargingstation" in support
    assert "change_chargingstation" not in finance
    assert "view_chargingsession" in finance
    # Operators never touch money records beyond reading them.
    assert not {c for c in operators if c.startswith(("issue_", "credit_", "export_"))}


@pytest.mark.django_db
def test_demo_data_is_idempotent():
    from cpo.demo import demo_data_load
    from sessions.models import IdToken
    from stations.models import ChargingStation, Connector

    demo_data_load()
    demo_data_load()
    assert ChargingStation.objects.filter(identity__in=["DEMO-16", "DEMO-201"]).count() == 2
    assert Connector.objects.filter(station__identity="DEMO-16").count() == 2
    assert IdToken.objects.filter(uid__startswith="DEMO-TAG").count() == 3
    station = ChargingStation.objects.get(identity="DEMO-16")
    assert station.check_password("DEMO-16-secret-pass")
    assert station.location.time_zone == "Europe/Amsterdam"


def test_station_password_is_salted():
    from stations.models import station_password_hash, station_password_matches

    first, second = (
        station_password_hash("same-password-16"),
        station_password_hash("same-password-16"),
    )
    assert first != second
    assert station_password_matches("same-password-16", first)
    assert not station_password_matches("other-password-16", first)


@pytest.mark.live
def test_a_real_worker_runs_a_task_over_redis(celery_worker):
    from cpo.celery import app
    from cpo.tasks import worker_probe

    assert not app.conf.task_always_eager
    result = worker_probe.delay()
    payload = result.get(timeout=30)
    assert payload["pid"] == celery_worker.process.pid
    assert payload["pid"] != os.getpid()


@pytest.mark.live
def test_healthz_reports_each_dependency(client, celery_worker):
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["database"]["ok"]
    assert body["redis"]["ok"]
    assert body["celery"]["ok"]

    celery_worker.stop()
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["celery"]["ok"] is False


def _children_of_data_dir(data_dir: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmdline = " ".join(process.info["cmdline"] or [])
            environ = process.info["environ"] or {}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if str(data_dir) in cmdline or environ.get("CPO_DATA_DIR") == str(data_dir):
            found.append(process)
    return found


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback only
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.mark.live
def test_run_command_serves_and_stops_cleanly(tmp_path):
    """`make run` on embedded defaults: admin, /healthz green, unknown station refused, and
    Ctrl-C leaves no daphne, Celery or Redis process behind."""
    data_dir = tmp_path / "data"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "CPO_SQLITE_PATH")
    }
    env.update(CPO_DATA_DIR=str(data_dir), PORT=str(free_port()), PYTHONUNBUFFERED="1")
    for step in (["migrate", "--no-input", "-v0"], ["demo_data"]):
        subprocess.run(
            [sys.executable, "manage.py", *step], cwd=ROOT, env=env, check=True, timeout=300
        )
    log = (tmp_path / "run.log").open("wb")
    run = subprocess.Popen(
        [sys.executable, "-m", "cpo.run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    port = env["PORT"]
    try:
        deadline = time.monotonic() + 180
        status, body = 0, b""
        while time.monotonic() < deadline:
            try:
                status, body = _get(f"http://127.0.0.1:{port}/healthz")
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert status == 200, (body, (tmp_path / "run.log").read_text()[-3000:])

        status, body = _get(f"http://127.0.0.1:{port}/admin/login/")
        assert status == 200
        assert b"username" in body

        async def unknown_station() -> None:
            with pytest.raises(websockets.InvalidStatus):
                await websockets.connect(
                    f"ws://127.0.0.1:{port}/ocpp/UNKNOWN-ID",
                    subprotocols=["ocpp1.6"],
                    open_timeout=10,
                )

        import asyncio

        asyncio.run(unknown_station())
        assert len(_children_of_data_dir(data_dir)) >= 3  # daphne, celery, redis-server
    finally:
        run.send_signal(signal.SIGINT)
        run.wait(60)
    output = (tmp_path / "run.log").read_text()
    assert "Operator panel" in output
    assert "DEMO-16" in output
    time.sleep(0.5)
    assert _children_of_data_dir(data_dir) == []
