"""Monitoring's panel pieces in a real browser, clicked by an operator: the detector thresholds
(stored, and the next pass uses them), the 2.0.1 monitoring commands on the station's
commands page (the frame reaches a real station over daphne), and an alert rule created in
the admin (stored, and the next incident's e-mail goes to it)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from ocpp.v201 import call as call201
from playwright.async_api import expect

from stations.monitoring.models import AlertRule, Incident, IncidentType, MonitoringThresholds
from tests.cpo.panel.conftest import browser_page, login, make_staff  # noqa: F401 - fixture
from tests.ocpp_client import station
from tests.stations.conftest import until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live, pytest.mark.browser]


@sync_to_async
def _faulted_two_minutes_ago(identity: str) -> int:
    from stations.models import ChargingStation
    from stations.services import connector_status_changed, station_evses_create

    cs = ChargingStation.objects.create(identity=identity, protocol="ocpp1.6")
    station_evses_create(station=cs, count=1)
    connector_status_changed(
        station_id=cs.pk,
        evse_id=1,
        connector_id=1,
        status="Faulted",
        timestamp=timezone.now() - timedelta(minutes=2),
        error_code="GroundFailure",
    )
    return cs.pk


@sync_to_async
def _detect() -> None:
    from stations.monitoring.detectors import detectors_run

    detectors_run()


@sync_to_async
def _faults(station_id: int) -> list[Incident]:
    return list(Incident.objects.filter(station_id=station_id, type=IncidentType.CONNECTOR_FAULTED))


async def test_an_operator_sets_a_threshold_and_the_next_pass_uses_it(
    daphne_server,
    roles,
    browser_page,  # noqa: F811
    settings,
):
    settings.MONITORING_FAULTED_MINUTES = 5
    station_id = await _faulted_two_minutes_ago("MON-THR-1")
    await _detect()
    assert await _faults(station_id) == []  # faulted for 2 of the 5 minutes

    await sync_to_async(make_staff)("op-thr", "Operators")
    page = browser_page
    await login(page, daphne_server.http_url, "op-thr")
    await page.goto(f"{daphne_server.http_url}/admin/monitoring/monitoringthresholds/")
    await expect(page.locator("#id_faulted_minutes")).to_have_attribute("placeholder", "5")
    await expect(page.locator("body")).to_contain_text("Empty: 5 (MONITORING_FAULTED_MINUTES)")
    await page.fill("#id_faulted_minutes", "1")
    await page.fill("#id_reconnects_per_hour", "0")  # below its minimum: refused
    await page.click("input[name=_save]")
    await expect(page.locator(".errorlist")).to_contain_text("at least 1")
    assert await sync_to_async(MonitoringThresholds.objects.count)() == 0
    await page.fill("#id_reconnects_per_hour", "")
    await page.click("input[name=_save]")
    await expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    row = await sync_to_async(MonitoringThresholds.objects.get)()
    assert (row.faulted_minutes, row.reconnects_per_hour) == (1, None)

    await _detect()
    [incident] = await _faults(station_id)
    assert incident.state == Incident.State.OPEN

    # The list opens the one row again.
    await page.goto(f"{daphne_server.http_url}/admin/monitoring/monitoringthresholds/")
    await expect(page.locator("#id_faulted_minutes")).to_have_value("1")
    assert page.errors == []


def _calls(cp: Any, action: str) -> list[dict[str, Any]]:
    return [payload for name, payload in cp.cp.received_calls if name == action]


@sync_to_async
def _station_pk(identity: str) -> int:
    from stations.models import ChargingStation

    return ChargingStation.objects.get(identity=identity).pk


@sync_to_async
def _last_command(station_id: int) -> Any:
    from stations.commands.models import Command

    return Command.objects.filter(station_id=station_id).order_by("-pk").first()


async def test_an_operator_sends_the_2_0_1_monitoring_commands_from_the_station_page(
    daphne_server,
    roles,
    browser_page,  # noqa: F811
):
    from stations.models import ChargingStation

    await sync_to_async(ChargingStation.objects.create)(identity="MON-VM-1", protocol="ocpp2.0.1")
    await sync_to_async(make_staff)("op-vm", "Operators")
    page = browser_page
    await login(page, daphne_server.http_url, "op-vm")
    async with station(daphne_server.ws_url, "MON-VM-1", protocol="ocpp2.0.1") as cp:
        await cp.cp.call(
            call201.BootNotification(
                charging_station={"model": "DC-150", "vendor_name": "ACME"}, reason="PowerUp"
            )
        )
        pk = await _station_pk("MON-VM-1")
        base = f"{daphne_server.http_url}/admin/stations/chargingstation/{pk}/commands/"
        await page.goto(base)
        await page.click("a.button:text-is('Set variable monitoring')")
        await page.fill("#id_key", "Connector.Problem")
        await page.fill("#id_evse_id", "1")
        await page.select_option("#id_type", "Delta")
        await page.fill("#id_value", "1")
        await page.fill("#id_severity", "2")
        await page.click("#command-form input[type=submit]")
        await until(lambda: _calls(cp, "SetVariableMonitoring"))
        [sent] = _calls(cp, "SetVariableMonitoring")
        assert sent["set_monitoring_data"] == [
            {
                "value": 1.0,
                "type": "Delta",
                "severity": 2,
                "transaction": False,
                "component": {"name": "Connector", "evse": {"id": 1}},
                "variable": {"name": "Problem"},
            }
        ]
        command = await until(lambda: _final(pk, "SetVariableMonitoring"))
        assert command.result == "Accepted"

        await page.goto(base)
        await page.click("a.button:text-is('Set monitoring level')")
        await page.fill("#id_severity", "4")
        await page.click("#command-form input[type=submit]")
        await until(lambda: _calls(cp, "SetMonitoringLevel"))
        assert _calls(cp, "SetMonitoringLevel") == [{"severity": 4}]

        await page.goto(base)
        await page.click("a.button:text-is('Set monitoring base')")
        await page.select_option("#id_monitoring_base", "HardWiredOnly")
        await page.click("#command-form input[type=submit]")
        await until(lambda: _calls(cp, "SetMonitoringBase"))
        assert _calls(cp, "SetMonitoringBase") == [{"monitoring_base": "HardWiredOnly"}]

        await page.goto(base)
        await page.click("a.button:text-is('Clear variable monitoring')")
        await page.fill("#id_ids", "100, 101")
        await page.click("#command-form input[type=submit]")
        await until(lambda: _calls(cp, "ClearVariableMonitoring"))
        assert _calls(cp, "ClearVariableMonitoring") == [{"id": [100, 101]}]
        cleared = await until(lambda: _final(pk, "ClearVariableMonitoring"))
        assert cleared.status == "accepted"
    assert page.errors == []


def _final(station_id: int, action: str) -> Any:
    from stations.commands.models import Command

    command = Command.objects.filter(station_id=station_id, action=action).order_by("-pk").first()
    return command if command is not None and command.is_final else None


async def test_a_1_6_station_page_offers_no_2_0_1_monitoring(
    daphne_server,
    roles,
    browser_page,  # noqa: F811
):
    from stations.models import ChargingStation

    cs = await sync_to_async(ChargingStation.objects.create)(
        identity="MON-VM-2", protocol="ocpp1.6"
    )
    await sync_to_async(make_staff)("op-vm2", "Operators")
    page = browser_page
    await login(page, daphne_server.http_url, "op-vm2")
    await page.goto(f"{daphne_server.http_url}/admin/stations/chargingstation/{cs.pk}/commands/")
    await expect(page.locator("a.button:text-is('Reset')")).to_have_count(1)
    await expect(page.locator("a.button:text-is('Set variable monitoring')")).to_have_count(0)


@sync_to_async
def _open_fault(identity: str) -> Incident:
    from stations.models import ChargingStation
    from stations.monitoring.services import incident_open_or_touch

    cs = ChargingStation.objects.create(identity=identity, protocol="ocpp1.6")
    incident, _ = incident_open_or_touch(
        type=IncidentType.CONNECTOR_FAULTED,
        fingerprint=f"ui-rule:{cs.pk}",
        station_id=cs.pk,
        severity=Incident.Severity.WARNING,
        title=f"{identity} 1/1 faulted: OtherError",
    )
    return incident


@sync_to_async
def _emails(rule_id: int) -> list[Any]:
    from cpo.outbox.models import OutboxMessage

    return list(
        OutboxMessage.objects.filter(destination_kind="email", destination_ref=str(rule_id))
    )


async def test_an_operator_creates_an_alert_rule_by_clicking_and_it_is_used(
    daphne_server,
    roles,
    browser_page,  # noqa: F811
):
    await sync_to_async(make_staff)("op-rule", "Operators")
    page = browser_page
    await login(page, daphne_server.http_url, "op-rule")
    await page.goto(f"{daphne_server.http_url}/admin/monitoring/alertrule/")
    await page.click(".object-tools a.addlink")
    await page.fill("#id_name", "faults, all sites")
    await page.fill("#id_recipients", "ops@cpo.test, not an address")
    await page.select_option("#id_min_severity", "warning")
    await page.check("input[name=incident_types][value=connector_faulted]")
    await page.check("#id_daily_digest")
    await page.click("input[name=_save]")
    await expect(page.locator(".errorlist")).to_contain_text("not an e-mail address")
    assert await sync_to_async(AlertRule.objects.count)() == 0  # bad input changes nothing

    await page.fill("#id_recipients", "ops@cpo.test\noncall@cpo.test")
    await page.click("input[name=_save]")
    await expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    rule = await sync_to_async(AlertRule.objects.get)()
    assert rule.recipient_list() == ["ops@cpo.test", "oncall@cpo.test"]
    assert rule.min_severity == "warning"
    assert rule.incident_types == ["connector_faulted"]
    assert rule.daily_digest
    await expect(page.locator("#result_list")).to_contain_text("faults, all sites")

    incident = await _open_fault("MON-RULE-1")
    [mail] = await _emails(rule.pk)
    assert mail.url == "mailto:ops@cpo.test,oncall@cpo.test"
    assert f"Incident #{incident.pk} opened" in bytes(mail.body).decode()
    assert page.errors == []
