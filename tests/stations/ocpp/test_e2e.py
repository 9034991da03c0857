"""End to end: a real daphne server on loopback, driven by the `ocpp` library's charge point.

Every frame the server sends is validated against the official schemas by tests/ocpp_client.py
when each `station(...)` block exits.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.utils import timezone
from ocpp.v16 import call
from ocpp.v201 import call as call201

from sessions.models import (
    AuthorizationDecision,
    ChargingSession,
    IdToken,
    MeterSample,
    TransactionEventRecord,
)
from stations.models import (
    ChargingStation,
    Connector,
    ConnectorStatusEvent,
    DeviceModelVariable,
    OcppMessage,
    SecurityEvent,
    StationConnection,
    StationEvent,
    StationNotification,
)
from tests.conftest import start_daphne
from tests.ocpp_client import basic_auth, station

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

PASSWORD = "station-secret-0001"
OCMF = (
    'OCMF|{"FV":"1.0","GI":"ABL","GS":"808","PG":"T1","MS":"0901454D4800007F9F3E",'
    '"RD":[{"TM":"2026-11-20T09:00:00,000+0100 S","TX":"B","RV":1.000,"RI":"1-b:1.8.0",'
    '"RU":"kWh","ST":"G"}]}|{"SD":"3045022100A1"}'
)


@sync_to_async
def make_station(
    identity: str, *, protocol: str = "ocpp1.6", password: str | None = PASSWORD, **fields
) -> ChargingStation:
    station_row = ChargingStation(identity=identity, protocol=protocol, **fields)
    if password:
        station_row.set_password(password)
    station_row.save()
    return station_row


@sync_to_async
def make_token(uid: str, **fields) -> IdToken:
    return IdToken.objects.create(uid=uid, **fields)


def ts(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def test_ocpp16_full_charge_is_answered_and_recorded(daphne_server):
    await make_station("CP16-1")
    await make_token("04A1B2C3D4")
    start = timezone.now().replace(microsecond=0) - timedelta(minutes=30)

    async with station(daphne_server.ws_url, "CP16-1", password=PASSWORD) as cp:
        boot = await cp.cp.call(
            call.BootNotification(
                charge_point_vendor="ACME",
                charge_point_model="Wallbox 22",
                charge_point_serial_number="SN-1",
                firmware_version="1.2.3",
            )
        )
        assert boot.status == "Accepted"
        assert boot.interval > 0
        await cp.cp.call(
            call.StatusNotification(connector_id=0, error_code="NoError", status="Available")
        )
        await cp.cp.call(
            call.StatusNotification(
                connector_id=1, error_code="NoError", status="Preparing", timestamp=ts(start)
            )
        )
        auth = await cp.cp.call(call.Authorize(id_tag="04a1b2c3d4"))  # case-insensitive uid
        assert auth.id_tag_info["status"] == "Accepted"
        started = await cp.cp.call(
            call.StartTransaction(
                connector_id=1, id_tag="04A1B2C3D4", meter_start=12000, timestamp=ts(start)
            )
        )
        assert started.id_tag_info["status"] == "Accepted"
        tx = started.transaction_id
        await cp.cp.call(
            call.StatusNotification(
                connector_id=1, error_code="NoError", status="Charging", timestamp=ts(start)
            )
        )
        await cp.cp.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=tx,
                meter_value=[
                    {
                        "timestamp": ts(start + timedelta(minutes=10)),
                        "sampledValue": [
                            {
                                "value": "15.5",
                                "measurand": "Energy.Active.Import.Register",
                                "unit": "kWh",
                            },
                            {"value": "11000", "measurand": "Power.Active.Import", "unit": "W"},
                            {
                                "value": "16.1",
                                "measurand": "Current.Import",
                                "phase": "L1",
                                "unit": "A",
                            },
                            {
                                "value": "16.0",
                                "measurand": "Current.Import",
                                "phase": "L2",
                                "unit": "A",
                            },
                            {
                                "value": "55",
                                "measurand": "SoC",
                                "unit": "Percent",
                                "location": "EV",
                            },
                            {"value": "21", "measurand": "Temperature", "unit": "Celsius"},
                        ],
                    }
                ],
            )
        )
        stop = await cp.cp.call(
            call.StopTransaction(
                transaction_id=tx,
                meter_stop=19500,
                timestamp=ts(start + timedelta(minutes=20)),
                reason="EVDisconnected",
                id_tag="04A1B2C3D4",
                transaction_data=[
                    {
                        "timestamp": ts(start + timedelta(minutes=20)),
                        "sampledValue": [
                            {
                                "value": OCMF,
                                "format": "SignedData",
                                "context": "Transaction.End",
                                "measurand": "Energy.Active.Import.Register",
                            },
                        ],
                    }
                ],
            )
        )
        assert stop.id_tag_info["status"] == "Accepted"
        heartbeat = await cp.cp.call(call.Heartbeat())
        assert heartbeat.current_time

    @sync_to_async
    def check():
        station_row = ChargingStation.objects.get(identity="CP16-1")
        assert (station_row.vendor, station_row.model, station_row.firmware_version) == (
            "ACME",
            "Wallbox 22",
            "1.2.3",
        )
        assert station_row.protocol == "ocpp1.6"
        assert station_row.status == "Available"
        session = ChargingSession.objects.get(station=station_row)
        assert session.ocpp16_transaction_id == tx
        assert session.started_at == start
        assert session.ended_at == start + timedelta(minutes=20)
        assert session.energy_wh == Decimal(7500)
        assert session.stop_reason == "EVDisconnected"
        assert session.last_power_w == Decimal(11000)
        assert session.last_soc == Decimal(55)
        assert session.status == "completed"
        assert session.id_token is not None
        assert session.id_token.uid == "04A1B2C3D4"
        contexts = list(
            AuthorizationDecision.objects.filter(station=station_row)
            .order_by("created_at")
            .values_list("context", flat=True)
        )
        assert contexts == ["Authorize", "StartTransaction", "StopTransaction"]
        samples = MeterSample.objects.filter(session=session)
        assert samples.count() == 7
        signed = samples.get(format="SignedData")
        assert signed.signed_data == OCMF  # stored raw and untouched
        assert samples.get(measurand="Current.Import", phase="L1").value == Decimal("16.1")
        connector = Connector.objects.get(station=station_row, evse__evse_id=1)
        assert connector.status == "Charging"
        assert ConnectorStatusEvent.objects.filter(station=station_row).count() == 3
        connection = StationConnection.objects.get(station=station_row)
        assert connection.security_profile == 1

    await check()

    @sync_to_async
    def disconnected() -> bool:
        return (
            StationConnection.objects.filter(
                station__identity="CP16-1", disconnected_at__isnull=False
            ).exists()
            and not ChargingStation.objects.get(identity="CP16-1").is_online
        )

    # The server records the disconnect once it has processed the close.
    for _ in range(100):
        if await disconnected():
            break
        await asyncio.sleep(0.05)
    assert await disconnected()


async def test_ocpp201_full_charge_and_reports(daphne_server):
    await make_station("CP201-1", protocol="ocpp2.0.1")
    await make_token("AABBCCDD", type="ISO14443")
    start = timezone.now().replace(microsecond=0) - timedelta(minutes=40)

    def event(event_type, seq, minutes, trigger, state, meter=None, **extra):
        kwargs = dict(
            event_type=event_type,
            timestamp=ts(start + timedelta(minutes=minutes)),
            trigger_reason=trigger,
            seq_no=seq,
            transaction_info={"transaction_id": "TX-201-A", "charging_state": state, **extra},
        )
        if meter is not None:
            kwargs["meter_value"] = [
                {
                    "timestamp": ts(start + timedelta(minutes=minutes)),
                    "sampled_value": meter,
                }
            ]
        return kwargs

    async with station(
        daphne_server.ws_url, "CP201-1", protocol="ocpp2.0.1", password=PASSWORD
    ) as cp:
        boot = await cp.cp.call(
            call201.BootNotification(
                charging_station={
                    "model": "DC-150",
                    "vendor_name": "ACME",
                    "firmware_version": "4.0",
                    "serial_number": "SN-201",
                },
                reason="PowerUp",
            )
        )
        assert boot.status == "Accepted"
        await cp.cp.call(
            call201.StatusNotification(
                timestamp=ts(start), connector_status="Occupied", evse_id=1, connector_id=1
            )
        )
        auth = await cp.cp.call(
            call201.Authorize(id_token={"id_token": "aabbccdd", "type": "ISO14443"})
        )
        assert auth.id_token_info["status"] == "Accepted"
        response = await cp.cp.call(
            call201.TransactionEvent(
                **event(
                    "Started",
                    0,
                    0,
                    "Authorized",
                    "Charging",
                    meter=[{"value": 1000, "context": "Transaction.Begin"}],
                ),
                id_token={"id_token": "AABBCCDD", "type": "ISO14443"},
                evse={"id": 1, "connector_id": 1},
            )
        )
        assert response.id_token_info["status"] == "Accepted"
        await cp.cp.call(
            call201.TransactionEvent(
                **event(
                    "Updated",
                    1,
                    15,
                    "MeterValuePeriodic",
                    "Charging",
                    meter=[
                        {
                            "value": 9000,
                            "measurand": "Energy.Active.Import.Register",
                            "unit_of_measure": {"unit": "Wh"},
                        },
                        {
                            "value": 32,
                            "measurand": "Power.Active.Import",
                            "unit_of_measure": {"unit": "kW"},
                        },
                        {
                            "value": 4100,
                            "measurand": "Energy.Active.Import.Register",
                            "context": "Sample.Clock",
                            "signed_meter_value": {
                                "signed_meter_data": "T0NNRnx7fQ==",
                                "signing_method": "ECDSA-secp256r1",
                                "encoding_method": "OCMF",
                                "public_key": "MFkwEwYHKoZIzj0CAQ==",
                            },
                            "location": "Outlet",
                        },
                    ],
                )
            )
        )
        await cp.cp.call(
            call201.TransactionEvent(
                **event("Updated", 2, 25, "ChargingStateChanged", "SuspendedEV")
            )
        )
        ended = await cp.cp.call(
            call201.TransactionEvent(
                **event(
                    "Ended",
                    3,
                    30,
                    "EVCommunicationLost",
                    "EVConnected",
                    meter=[{"value": 14000, "context": "Transaction.End"}],
                    stopped_reason="EVDisconnected",
                )
            )
        )
        assert ended.total_cost is None  # cost display is off for this station
        await cp.cp.call(
            call201.MeterValues(
                evse_id=0,
                meter_value=[{"timestamp": ts(start), "sampled_value": [{"value": 123456}]}],
            )
        )
        await cp.cp.call(
            call201.NotifyReport(
                request_id=7,
                generated_at=ts(start),
                seq_no=0,
                tbc=False,
                report_data=[
                    {
                        "component": {"name": "OCPPCommCtrlr"},
                        "variable": {"name": "HeartbeatInterval"},
                        "variable_attribute": [
                            {"type": "Actual", "value": "300", "mutability": "ReadWrite"}
                        ],
                        "variable_characteristics": {
                            "data_type": "integer",
                            "supports_monitoring": False,
                        },
                    }
                ],
            )
        )
        await cp.cp.call(
            call201.NotifyEvent(
                generated_at=ts(start),
                seq_no=0,
                event_data=[
                    {
                        "event_id": 1,
                        "timestamp": ts(start),
                        "trigger": "Alerting",
                        "actual_value": "true",
                        "event_notification_type": "HardWiredNotification",
                        "tech_code": "GF01",
                        "component": {"name": "Connector", "evse": {"id": 1, "connector_id": 1}},
                        "variable": {"name": "Problem"},
                    }
                ],
            )
        )
        await cp.cp.call(
            call201.SecurityEventNotification(type="StartupOfTheDevice", timestamp=ts(start))
        )
        await cp.cp.call(call201.FirmwareStatusNotification(status="Installed", request_id=3))
        await cp.cp.call(call201.LogStatusNotification(status="Uploaded", request_id=4))
        needs = await cp.cp.call(
            call201.NotifyEVChargingNeeds(
                evse_id=1, charging_needs={"requested_energy_transfer": "DC"}
            )
        )
        # No energy management computes a schedule yet: Accepted would promise one (K15.FR.03).
        assert needs.status == "Rejected"
        # A local controller reports the progress of a PublishFirmware (L03).
        await cp.cp.call(
            call201.PublishFirmwareStatusNotification(
                status="Published", location=["http://lc.local/fw.bin"], request_id=7
            )
        )
        await cp.cp.call(
            call201.ReservationStatusUpdate(reservation_id=5, reservation_update_status="Expired")
        )
        await cp.cp.call(call201.SignCertificate(csr="-----BEGIN CERTIFICATE REQUEST-----"))
        cert = await cp.cp.call(
            call201.Get15118EVCertificate(
                iso15118_schema_version="urn:iso:15118:2:2013:MsgDef",
                action="Install",
                exi_request="AA==",
            )
        )
        assert cert.status == "Failed"
        data = await cp.cp.call(call201.DataTransfer(vendor_id="com.acme", message_id="x"))
        assert data.status == "UnknownVendorId"

    @sync_to_async
    def check():
        station_row = ChargingStation.objects.get(identity="CP201-1")
        session = ChargingSession.objects.get(station=station_row, transaction_id="TX-201-A")
        assert session.status == "completed"
        assert session.meter_start_wh == Decimal(1000)
        assert session.energy_wh == Decimal(13000)
        assert session.stop_reason == "EVDisconnected"
        assert session.charging_state == "EVConnected"
        assert session.last_power_w == Decimal(32000)
        assert (session.evse_id, session.connector_id) == (1, 1)
        assert not session.seq_no_gap
        assert not session.is_orphan
        assert TransactionEventRecord.objects.filter(session=session).count() == 4
        signed = MeterSample.objects.get(session=session, encoding_method="OCMF")
        assert signed.signed_data == "T0NNRnx7fQ=="
        assert signed.public_key
        assert MeterSample.objects.filter(station=station_row, session=None).count() == 1
        assert (
            DeviceModelVariable.objects.get(
                station=station_row, component="OCPPCommCtrlr", variable="HeartbeatInterval"
            ).value
            == "300"
        )
        assert StationEvent.objects.get(station=station_row).tech_code == "GF01"
        assert Connector.objects.get(station=station_row).error_code == "GF01"
        assert SecurityEvent.objects.filter(station=station_row).count() == 1
        actions = set(
            StationNotification.objects.filter(station=station_row).values_list("action", flat=True)
        )
        assert {
            "FirmwareStatusNotification",
            "LogStatusNotification",
            "NotifyEVChargingNeeds",
            "ReservationStatusUpdate",
            "NotifyReport",
            "DataTransfer",
        } <= actions
        assert station_row.csrs.count() == 1
        published = StationNotification.objects.get(
            station=station_row, action="PublishFirmwareStatusNotification"
        )
        assert (published.status, published.request_id) == ("Published", 7)
        assert published.payload["location"] == ["http://lc.local/fw.bin"]
        assert (
            StationNotification.objects.get(
                station=station_row, action="NotifyEVChargingNeeds"
            ).status
            == "Rejected"
        )

    await check()


async def test_retries_are_idempotent(daphne_server):
    await make_station("CP-RETRY")
    await make_token("TAG-RETRY")
    start = timezone.now().replace(microsecond=0) - timedelta(minutes=5)
    async with station(daphne_server.ws_url, "CP-RETRY", password=PASSWORD) as cp:
        start_call = call.StartTransaction(
            connector_id=1, id_tag="TAG-RETRY", meter_start=0, timestamp=ts(start)
        )
        first = await cp.cp.call(start_call)
        second = await cp.cp.call(start_call)
        assert first.transaction_id == second.transaction_id
        meter = call.MeterValues(
            connector_id=1,
            transaction_id=first.transaction_id,
            meter_value=[
                {"timestamp": ts(start + timedelta(minutes=1)), "sampledValue": [{"value": "500"}]}
            ],
        )
        await cp.cp.call(meter)
        await cp.cp.call(meter)
        stop = call.StopTransaction(
            transaction_id=first.transaction_id,
            meter_stop=900,
            timestamp=ts(start + timedelta(minutes=2)),
        )
        await cp.cp.call(stop)
        await cp.cp.call(stop)

    await make_station("CP-RETRY-201", protocol="ocpp2.0.1")
    async with station(
        daphne_server.ws_url, "CP-RETRY-201", protocol="ocpp2.0.1", password=PASSWORD
    ) as cp:
        started = call201.TransactionEvent(
            event_type="Started",
            timestamp=ts(start),
            trigger_reason="CablePluggedIn",
            seq_no=0,
            transaction_info={"transaction_id": "R-1"},
            meter_value=[{"timestamp": ts(start), "sampled_value": [{"value": 10}]}],
        )
        await cp.cp.call(started)
        await cp.cp.call(started)

    @sync_to_async
    def check():
        session = ChargingSession.objects.get(station__identity="CP-RETRY")
        assert MeterSample.objects.filter(session=session).count() == 1
        assert session.energy_wh == Decimal(900)
        assert ChargingSession.objects.filter(station__identity="CP-RETRY-201").count() == 1
        assert TransactionEventRecord.objects.filter(transaction_id="R-1").count() == 1
        assert MeterSample.objects.filter(station__identity="CP-RETRY-201").count() == 1

    await check()


async def test_offline_replay_keeps_charger_time_and_unknown_stop_is_an_orphan(daphne_server):
    await make_station("CP-OFFLINE")
    await make_token("TAG-OFF")
    long_ago = timezone.now().replace(microsecond=0) - timedelta(days=2)
    async with station(daphne_server.ws_url, "CP-OFFLINE", password=PASSWORD) as cp:
        # Queued while offline: arrive now, in order, with their old timestamps.
        started = await cp.cp.call(
            call.StartTransaction(
                connector_id=2, id_tag="TAG-OFF", meter_start=100, timestamp=ts(long_ago)
            )
        )
        for minute in (10, 20):
            await cp.cp.call(
                call.MeterValues(
                    connector_id=2,
                    transaction_id=started.transaction_id,
                    meter_value=[
                        {
                            "timestamp": ts(long_ago + timedelta(minutes=minute)),
                            "sampledValue": [{"value": str(100 + minute * 100)}],
                        }
                    ],
                )
            )
        await cp.cp.call(
            call.StopTransaction(
                transaction_id=started.transaction_id,
                meter_stop=2600,
                timestamp=ts(long_ago + timedelta(minutes=25)),
            )
        )
        # A stop for a transaction this CSMS never issued.
        await cp.cp.call(
            call.StopTransaction(transaction_id=987654, meter_stop=5000, timestamp=ts(long_ago))
        )

    @sync_to_async
    def check():
        session = ChargingSession.objects.get(ocpp16_transaction_id=started.transaction_id)
        assert session.started_at == long_ago
        assert session.ended_at == long_ago + timedelta(minutes=25)
        assert session.energy_wh == Decimal(2500)
        timestamps = list(session.samples.values_list("timestamp", flat=True))
        assert timestamps == sorted(timestamps)
        assert timestamps[0] < session.created_at
        orphan = ChargingSession.objects.get(
            station__identity="CP-OFFLINE", transaction_id="987654"
        )
        assert orphan.is_orphan
        assert orphan.status == "completed"
        assert "stop for an unknown transaction" in orphan.anomalies
        assert orphan.energy_wh == Decimal(0)

    await check()


@pytest.mark.parametrize(
    ("protocol", "codes"),
    [
        (
            "ocpp1.6",
            {
                "json": "FormationViolation",
                "action": "NotImplemented",
                "direction": "NotSupported",
                "type": "TypeConstraintViolation",
                "missing": "OccurenceConstraintViolation",
                "extra": "FormationViolation",
                "enum": "PropertyConstraintViolation",
                "msgtype": "FormationViolation",
            },
        ),
        (
            "ocpp2.0.1",
            {
                "json": "RpcFrameworkError",
                "action": "NotImplemented",
                "direction": "NotSupported",
                "type": "TypeConstraintViolation",
                "missing": "OccurrenceConstraintViolation",
                "extra": "FormatViolation",
                "enum": "PropertyConstraintViolation",
                "msgtype": "MessageTypeNotSupported",
            },
        ),
    ],
)
async def test_bad_frames_get_the_right_callerror_and_the_connection_lives_on(
    daphne_server, protocol, codes
):
    identity = f"CP-BAD-{protocol[-3:]}"
    await make_station(identity, protocol=protocol)
    reset = "Reset"
    authorize: tuple[dict[str, object], ...] = (
        ({"idTag": 5}, {}, {"idTag": "A", "bogus": 1})
        if protocol == "ocpp1.6"
        else (
            {"idToken": {"idToken": 5, "type": "ISO14443"}},
            {},
            {"idToken": {"idToken": "A", "type": "ISO14443"}, "bogus": 1},
        )
    )
    status_enum = (
        {"connectorId": 1, "errorCode": "NoError", "status": "Dancing"}
        if protocol == "ocpp1.6"
        else {
            "timestamp": "2026-01-01T00:00:00Z",
            "connectorStatus": "Dancing",
            "evseId": 1,
            "connectorId": 1,
        }
    )
    async with station(daphne_server.ws_url, identity, protocol=protocol, password=PASSWORD) as cp:
        reply = await cp.raw("this is not json", message_id="-1")
        assert reply[:3] == [4, "-1", codes["json"]]
        assert (await cp.raw([2, "m1", "FlyToTheMoon", {}]))[2] == codes["action"]
        assert (await cp.raw([2, "m2", reset, {"type": "Hard"}]))[2] == codes["direction"]
        assert (await cp.raw([2, "m3", "Authorize", authorize[0]]))[2] == codes["type"]
        assert (await cp.raw([2, "m4", "Authorize", authorize[1]]))[2] == codes["missing"]
        assert (await cp.raw([2, "m5", "Authorize", authorize[2]]))[2] == codes["extra"]
        assert (await cp.raw([2, "m6", "StatusNotification", status_enum]))[2] == codes["enum"]
        assert (await cp.raw([7, "m7", "Heartbeat", {}]))[2] == codes["msgtype"]
        assert (await cp.raw([2, "m8", "Heartbeat", []]))[2] in (
            "FormationViolation",
            "FormatViolation",
        )
        # Still usable afterwards.
        heartbeat = await cp.raw([2, "m9", "Heartbeat", {}])
        assert heartbeat[0] == 3
        assert "currentTime" in heartbeat[2]

    @sync_to_async
    def logged_errors():
        return OcppMessage.objects.filter(identity=identity, is_error=True).count()

    assert await logged_errors() >= 16  # every bad frame and its CALLERROR


async def test_admission_refuses_unknown_missing_and_wrong_credentials(daphne_server):
    await make_station("CP-AUTH")
    for identity, password in (
        ("UNKNOWN-ID", PASSWORD),
        ("CP-AUTH", None),
        ("CP-AUTH", "wrong-password-00"),
    ):
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with station(daphne_server.ws_url, identity, password=password):
                pass
        # RFC 7235 and the OCPP security profiles: 401 with a Basic challenge, not 403.
        assert refused.value.response.status_code == 401
        assert refused.value.response.headers["WWW-Authenticate"].startswith('Basic realm="OCPP"')
    # Right password but another station's username.
    await make_station("CP-AUTH-2")
    with pytest.raises(websockets.InvalidStatus):
        async with station(
            daphne_server.ws_url, "CP-AUTH", headers=basic_auth("CP-AUTH-2", PASSWORD)
        ):
            pass


async def test_subprotocol_negotiation_honours_the_chargers_order(daphne_server):
    log_start = daphne_server.log.stat().st_size
    await make_station("CP-PROTO", password=None)
    async with station(
        daphne_server.ws_url, "CP-PROTO", subprotocols=["ocpp2.0.1", "ocpp1.6"]
    ) as cp:
        assert cp.ws.subprotocol == "ocpp2.0.1"
    async with station(
        daphne_server.ws_url, "CP-PROTO", subprotocols=["ocpp1.6", "ocpp2.0.1"]
    ) as cp:
        assert cp.ws.subprotocol == "ocpp1.6"
    for offered in (["ocpp1.5"], []):
        # OCPP-J: the handshake completes without a Sec-WebSocket-Protocol header, then the
        # server closes at once, with a valid close code and no traceback in daphne's log.
        ws = await websockets.connect(
            f"{daphne_server.ws_url}/CP-PROTO",
            subprotocols=[websockets.Subprotocol(p) for p in offered] or None,
        )
        assert ws.subprotocol is None
        assert ws.response.headers.get("Sec-WebSocket-Protocol") is None
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1000
        assert "ocpp1.6" in closed.value.rcvd.reason
    await asyncio.sleep(0.5)  # daphne writes an application error after the close
    with daphne_server.log.open("rb") as log:
        log.seek(log_start)
        assert b"Traceback" not in log.read()


async def test_identity_is_percent_decoded(daphne_server):
    await make_station("RDAM|123")
    async with station(
        daphne_server.ws_url, "RDAM%7C123", headers=basic_auth("RDAM|123", PASSWORD)
    ) as cp:
        assert (await cp.raw([2, "h", "Heartbeat", {}]))[0] == 3


async def test_auto_registration_keeps_the_station_pending_until_accepted(transactional_db):
    server = start_daphne("autoreg", OCPP_AUTO_REGISTER="true")
    try:
        async with station(server.ws_url, "NEW-CP-1", protocol="ocpp1.6") as cp:
            boot = await cp.cp.call(
                call.BootNotification(charge_point_vendor="V", charge_point_model="M")
            )
            assert boot.status == "Pending"
            assert (await cp.raw([2, "h1", "Heartbeat", {}]))[0] == 3
            refused = await cp.raw([2, "a1", "Authorize", {"idTag": "X"}])
            assert refused[2] == "SecurityError"

        @sync_to_async
        def accept():
            from stations.services import station_accept

            row = ChargingStation.objects.get(identity="NEW-CP-1")
            assert row.auto_registered
            assert row.registration_status == "Pending"
            station_accept(station=row)

        await accept()
        async with station(server.ws_url, "NEW-CP-1", protocol="ocpp1.6") as cp:
            boot = await cp.cp.call(
                call.BootNotification(charge_point_vendor="V", charge_point_model="M")
            )
            assert boot.status == "Accepted"
            assert (await cp.raw([2, "a2", "Authorize", {"idTag": "X"}]))[2]["idTagInfo"] == {
                "status": "Invalid"
            }
    finally:
        server.stop()


async def test_client_certificate_identity_from_a_trusted_proxy(transactional_db):
    await make_station("CP-CERT")
    header = {"X-SSL-Client-S-DN": "CN=CP-CERT,O=Demo CPO"}
    # Without trusted proxies the header is ignored and the password is required.
    plain = start_daphne("untrusted")
    trusted = start_daphne("trusted", OCPP_TRUSTED_PROXIES="127.0.0.1")
    try:
        with pytest.raises(websockets.InvalidStatus):
            async with station(plain.ws_url, "CP-CERT", headers=header):
                pass
        async with station(trusted.ws_url, "CP-CERT", headers=header) as cp:
            assert (await cp.raw([2, "h", "Heartbeat", {}]))[0] == 3
        with pytest.raises(websockets.InvalidStatus):
            async with station(
                trusted.ws_url, "CP-CERT", headers={"X-SSL-Client-S-DN": "CN=SOMEONE-ELSE"}
            ):
                pass
    finally:
        plain.stop()
        trusted.stop()

    @sync_to_async
    def profiles():
        return list(
            StationConnection.objects.filter(station__identity="CP-CERT").values_list(
                "security_profile", flat=True
            )
        )

    assert await profiles() == [3]


async def test_a_newer_connection_replaces_the_older_one(daphne_server):
    await make_station("CP-DUP")
    async with station(daphne_server.ws_url, "CP-DUP", password=PASSWORD) as first:
        async with station(daphne_server.ws_url, "CP-DUP", password=PASSWORD) as second:
            await asyncio.wait_for(first.ws.wait_closed(), 10)
            assert first.ws.close_code == 4000
            assert (await second.raw([2, "h", "Heartbeat", {}]))[0] == 3

            @sync_to_async
            def state():
                row = ChargingStation.objects.get(identity="CP-DUP")
                return row.is_online, StationConnection.objects.filter(
                    station=row, disconnected_at=None
                ).count()

            assert await state() == (True, 1)


async def test_seq_no_gap_is_flagged_and_late_started_completes_an_orphan(daphne_server):
    await make_station("CP-SEQ", protocol="ocpp2.0.1")
    start = timezone.now().replace(microsecond=0) - timedelta(minutes=10)
    async with station(
        daphne_server.ws_url, "CP-SEQ", protocol="ocpp2.0.1", password=PASSWORD
    ) as cp:

        def tx(event_type, seq, minutes):
            return call201.TransactionEvent(
                event_type=event_type,
                timestamp=ts(start + timedelta(minutes=minutes)),
                trigger_reason="MeterValuePeriodic",
                seq_no=seq,
                transaction_info={"transaction_id": "GAP-1"},
            )

        await cp.cp.call(tx("Updated", 1, 2))  # arrives before Started
        await cp.cp.call(tx("Started", 0, 0))
        await cp.cp.call(tx("Updated", 4, 5))  # 2 and 3 never arrive

    @sync_to_async
    def check():
        session = ChargingSession.objects.get(transaction_id="GAP-1")
        assert session.seq_no_gap
        assert not session.is_orphan
        assert session.started_at == start

    await check()


async def test_tracing_keeps_every_frame(daphne_server):
    await make_station("CP-TRACE", trace_enabled=True)
    async with station(daphne_server.ws_url, "CP-TRACE", password=PASSWORD) as cp:
        await cp.cp.call(call.Heartbeat())

    @sync_to_async
    def frames():
        return list(
            OcppMessage.objects.filter(identity="CP-TRACE")
            .order_by("created_at")
            .values_list("direction", "action")
        )

    # The server writes the log right after it answered; give it that moment.
    for _ in range(100):
        if len(await frames()) == 2:
            break
        await asyncio.sleep(0.05)
    assert await frames() == [("in", "Heartbeat"), ("out", "")]


async def test_demo_stations_accept_the_printed_credentials(daphne_server):
    @sync_to_async
    def load():
        from cpo.demo import demo_data_load

        demo_data_load()

    await load()
    async with station(daphne_server.ws_url, "DEMO-16", password="DEMO-16-secret-pass") as cp:
        started = await cp.cp.call(
            call.StartTransaction(
                connector_id=1, id_tag="DEMO-TAG-OK", meter_start=0, timestamp=ts(timezone.now())
            )
        )
        assert started.id_tag_info["status"] == "Accepted"
        await cp.cp.call(
            call.StopTransaction(
                transaction_id=started.transaction_id, meter_stop=4200, timestamp=ts(timezone.now())
            )
        )
    async with station(
        daphne_server.ws_url, "DEMO-201", protocol="ocpp2.0.1", password="DEMO-201-secret-pass"
    ) as cp:
        boot = await cp.cp.call(
            call201.BootNotification(
                charging_station={"model": "M", "vendor_name": "V"}, reason="PowerUp"
            )
        )
        assert boot.status == "Accepted"

    @sync_to_async
    def check():
        session = ChargingSession.objects.get(ocpp16_transaction_id=started.transaction_id)
        assert session.station.identity == "DEMO-16"
        assert session.energy_wh == Decimal(4200)
        assert session.account is not None
        assert session.account.name == "Demo Fleet BV"
        # And the operator sees it in the panel with its energy.
        from django.test import Client

        from cpo.models import User

        browser = Client()
        browser.force_login(User.objects.get(username="operator"))
        page = browser.get(
            f"/admin/charging/chargingsession/?q={session.transaction_id}"
        ).content.decode()
        assert "DEMO-16" in page
        assert "4.200" in page

    await check()
