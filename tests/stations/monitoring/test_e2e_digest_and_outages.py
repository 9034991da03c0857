"""The daily digest through the outbox to a real SMTP server on loopback, and detection in a
process whose Redis (cache, channel layer, Celery broker) is unreachable: the incidents are
recorded and their alert e-mails are delivered once Redis is back."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from stations.models import ChargingStation
from stations.monitoring import alerts, services
from stations.monitoring.models import AlertRule, Incident, IncidentType
from tests.conftest import ROOT, free_port, server_env
from tests.ocpp_client import station
from tests.stations.monitoring.conftest import boot16, incidents, make_station, status16

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]


def _text(message: Any) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


@sync_to_async
def _incidents_for_the_digest() -> None:
    cs = ChargingStation.objects.create(identity="MON-DIG-1", protocol="ocpp1.6")
    services.incident_open_or_touch(
        type=IncidentType.CONNECTOR_FAULTED,
        fingerprint="digest:open",
        station_id=cs.pk,
        severity=Incident.Severity.ERROR,
        title="MON-DIG-1 1/1 faulted: GroundFailure",
    )
    gone, _ = services.incident_open_or_touch(
        type=IncidentType.STUCK_PREPARING,
        fingerprint="digest:gone",
        station_id=cs.pk,
        severity=Incident.Severity.WARNING,
        title="MON-DIG-1 1/2 in Preparing for 15 min",
    )
    services.incident_resolve(incident_id=gone.pk)
    # Resolved two days ago: not in the digest.
    old, _ = services.incident_open_or_touch(
        type=IncidentType.STUCK_FINISHING,
        fingerprint="digest:old",
        station_id=cs.pk,
        severity=Incident.Severity.WARNING,
        title="MON-DIG-1 an old one",
    )
    services.incident_resolve(incident_id=old.pk, now=datetime.now(UTC) - timedelta(days=2))


async def test_the_daily_digest_reaches_a_real_smtp_server_once_a_day(
    settings, smtp_server, alert_worker
):
    settings.MONITORING_DIGEST_HOUR = 0  # due at any hour of the day
    await _incidents_for_the_digest()  # before the rules: no alert e-mail of their own
    await sync_to_async(AlertRule.objects.create)(
        name="daily", recipients="ops@cpo.test", min_severity="warning", daily_digest=True
    )
    await sync_to_async(AlertRule.objects.create)(
        name="pager", recipients="pager@cpo.test", min_severity="warning"
    )
    assert await sync_to_async(alerts.alert_digests_send)() == 1
    assert await sync_to_async(alerts.alert_digests_send)() == 0  # once a day
    [mail] = await smtp_server.wait_for(1)
    assert mail["To"] == "ops@cpo.test"
    assert mail["Subject"] == "Daily incident digest (daily): 1 open, 1 resolved"
    text = _text(mail)
    assert "MON-DIG-1 1/1 faulted: GroundFailure" in text
    assert "MON-DIG-1 1/2 in Preparing for 15 min" in text
    assert "an old one" not in text


def test_the_digest_waits_for_its_hour_in_the_rules_time_zone(settings):
    settings.MONITORING_DIGEST_HOUR = 7
    rule = AlertRule.objects.create(
        name="nl", recipients="ops@cpo.test", daily_digest=True, time_zone="Europe/Amsterdam"
    )
    before = datetime(2026, 12, 2, 5, 59, tzinfo=UTC)  # 06:59 in Amsterdam
    assert alerts.alert_digests_send(now=before) == 0
    at = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)  # 07:00 there
    assert alerts.alert_digests_send(now=at) == 1
    assert alerts.alert_digests_send(now=at + timedelta(hours=10)) == 0
    assert alerts._digest_key(rule, at + timedelta(days=1)) == (
        f"incident.digest:{rule.pk}:2026-12-03"
    )


DETECT = """
import json
from stations.monitoring.tasks import monitoring_pass
print("REPORT " + json.dumps(monitoring_pass()))
"""


def _detect_without_redis() -> dict[str, Any]:
    """A monitoring pass in its own process, whose REDIS_URL leads nowhere."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", DETECT],
        cwd=ROOT,
        env=server_env(REDIS_URL=dead, MONITORING_FAULTED_MINUTES="0"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("REPORT "))
    return dict(json.loads(line.removeprefix("REPORT ")))


async def test_detection_with_redis_unreachable_records_incidents_and_mails_them_after(
    daphne_server, settings, smtp_server, alert_worker
):
    from cpo.outbox.tasks import outbox_sweep

    await sync_to_async(AlertRule.objects.create)(
        name="on call", recipients="ops@cpo.test", min_severity="error"
    )
    await make_station("MON-NOREDIS-1")
    async with station(daphne_server.ws_url, "MON-NOREDIS-1") as cp:
        await boot16(cp)
        await status16(cp, "Faulted", error_code="GroundFailure")
        report = await sync_to_async(_detect_without_redis)()
    assert report[IncidentType.CONNECTOR_FAULTED]["opened"] == 1
    [incident] = await incidents("MON-NOREDIS-1", IncidentType.CONNECTOR_FAULTED)
    assert incident.state == Incident.State.OPEN
    # Redis is back for the others: the sweep (beat's, every 15 s) hands the e-mail over.
    assert await sync_to_async(outbox_sweep)() >= 1
    [mail] = await smtp_server.wait_for(1)
    assert "GroundFailure" in mail["Subject"]
