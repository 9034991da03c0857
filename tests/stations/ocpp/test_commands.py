"""Every verb against a real OCPP charge point on both protocol versions, through daphne.

The client validates every frame the server sends against the official schemas; the test
checks the action each verb became and that the result was recorded.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async

from tests.ocpp_client import station
from tests.stations.conftest import acreate, until_final, until_online

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

SOON = datetime(2030, 1, 1, 12, tzinfo=UTC)
PROFILE = {
    "id": 7,
    "stack_level": 1,
    "purpose": "TxDefaultProfile",
    "kind": "Absolute",
    "schedule": {
        "rate_unit": "A",
        "start": SOON.isoformat(),
        "periods": [{"start": 0, "limit": 16}, {"start": 3600, "limit": 8}],
    },
}
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"

# (verb, params, expected action in 1.6, expected action in 2.0.1; None = not in 1.6)
CASES = [
    (
        "remote_start",
        {
            "id_token": "04A1B2C3",
            "evse_id": 1,
            "charging_profile": {**PROFILE, "purpose": "TxProfile"},
        },
        "RemoteStartTransaction",
        "RequestStartTransaction",
    ),
    ("remote_stop", {"transaction_id": "42"}, "RemoteStopTransaction", "RequestStopTransaction"),
    ("get_transaction_status", {"transaction_id": "TX-1"}, None, "GetTransactionStatus"),
    ("reset", {"type": "hard"}, "Reset", "Reset"),
    ("unlock_connector", {"evse_id": 1}, "UnlockConnector", "UnlockConnector"),
    (
        "change_availability",
        {"operative": False, "evse_id": 1},
        "ChangeAvailability",
        "ChangeAvailability",
    ),
    ("get_configuration", {"keys": ["HeartbeatInterval"]}, "GetConfiguration", None),
    (
        "set_configuration",
        {"key": "HeartbeatInterval", "value": "120"},
        "ChangeConfiguration",
        None,
    ),
    ("get_base_report", {"report_base": "FullInventory"}, "GetConfiguration", "GetBaseReport"),
    (
        "trigger_message",
        {"message": "StatusNotification", "evse_id": 1},
        "TriggerMessage",
        "TriggerMessage",
    ),
    (
        "trigger_message",
        {"message": "LogStatusNotification"},
        "ExtendedTriggerMessage",
        "TriggerMessage",
    ),
    ("clear_cache", {}, "ClearCache", "ClearCache"),
    (
        "send_local_list",
        {
            "version": 3,
            "update_type": "Full",
            "entries": [
                {"id_token": "04A1B2C3", "status": "Accepted", "expiry": SOON.isoformat()},
                {"id_token": "CARD2", "status": "Blocked", "group": "FLEET1"},
            ],
        },
        "SendLocalList",
        "SendLocalList",
    ),
    (
        "send_local_list",
        {"version": 4, "update_type": "Differential", "entries": [{"id_token": "CARD2"}]},
        "SendLocalList",
        "SendLocalList",
    ),
    ("get_local_list_version", {}, "GetLocalListVersion", "GetLocalListVersion"),
    (
        "reserve_now",
        {"reservation_id": 5, "expires_at": SOON.isoformat(), "id_token": "04A1B2C3", "evse_id": 1},
        "ReserveNow",
        "ReserveNow",
    ),
    ("cancel_reservation", {"reservation_id": 5}, "CancelReservation", "CancelReservation"),
    (
        "set_charging_profile",
        {"evse_id": 0, "charging_profile": PROFILE},
        "SetChargingProfile",
        "SetChargingProfile",
    ),
    ("clear_charging_profile", {"profile_id": 7}, "ClearChargingProfile", "ClearChargingProfile"),
    (
        "clear_charging_profile",
        {"evse_id": 1, "purpose": "TxDefaultProfile"},
        "ClearChargingProfile",
        "ClearChargingProfile",
    ),
    (
        "get_composite_schedule",
        {"evse_id": 1, "duration": 3600, "rate_unit": "W"},
        "GetCompositeSchedule",
        "GetCompositeSchedule",
    ),
    (
        "data_transfer",
        {"vendor_id": "com.example", "message_id": "ping", "data": "{}"},
        "DataTransfer",
        "DataTransfer",
    ),
    (
        "get_diagnostics",
        {
            "location": "https://cpo.example/upload/x",
            "start_time": (SOON - timedelta(days=1)).isoformat(),
        },
        "GetDiagnostics",
        "GetLog",
    ),
    (
        "get_log",
        {"log_type": "SecurityLog", "location": "https://cpo.example/upload/y"},
        "GetLog",
        "GetLog",
    ),
    (
        "update_firmware",
        {"location": "https://cpo.example/fw.bin", "retrieve_at": SOON.isoformat(), "retries": 2},
        "UpdateFirmware",
        "UpdateFirmware",
    ),
    (
        "update_firmware",
        {
            "location": "https://cpo.example/fw.bin",
            "retrieve_at": SOON.isoformat(),
            "signing_certificate": PEM,
            "signature": "c2lnbmF0dXJl",
        },
        "SignedUpdateFirmware",
        "UpdateFirmware",
    ),
    (
        "customer_information",
        {"report": True, "clear": False, "customer_identifier": "cust-1"},
        None,
        "CustomerInformation",
    ),
    (
        "set_display_message",
        {"message_id": 1, "message": "Welcome", "priority": "InFront"},
        None,
        "SetDisplayMessage",
    ),
    ("get_display_messages", {"ids": [1]}, None, "GetDisplayMessages"),
    ("clear_display_message", {"message_id": 1}, None, "ClearDisplayMessage"),
    (
        "set_variable_monitoring",
        {"key": "Connector.Problem", "type": "Delta", "value": "1"},
        None,
        "SetVariableMonitoring",
    ),
    ("set_monitoring_base", {"monitoring_base": "All"}, None, "SetMonitoringBase"),
    ("set_monitoring_level", {"severity": 8}, None, "SetMonitoringLevel"),
    ("clear_variable_monitoring", {"ids": [1]}, None, "ClearVariableMonitoring"),
    (
        "install_certificate",
        {"certificate_type": "csms_root", "certificate": PEM},
        "InstallCertificate",
        "InstallCertificate",
    ),
    (
        "delete_certificate",
        {"issuer_name_hash": "aa", "issuer_key_hash": "bb", "serial_number": "01"},
        "DeleteCertificate",
        "DeleteCertificate",
    ),
    (
        "get_installed_certificate_ids",
        {"certificate_type": "manufacturer_root"},
        "GetInstalledCertificateIds",
        "GetInstalledCertificateIds",
    ),
    ("certificate_signed", {"certificate_chain": PEM}, "CertificateSigned", "CertificateSigned"),
]
# 2.0.1 device model: configuration by Component.Variable.
CASES_201 = [
    (
        "get_configuration",
        {"keys": ["OCPPCommCtrlr.HeartbeatInterval", "EVSE[1].Power"]},
        "GetVariables",
    ),
    ("get_configuration", {}, "GetBaseReport"),
    (
        "set_configuration",
        {"key": "OCPPCommCtrlr.HeartbeatInterval", "value": "120"},
        "SetVariables",
    ),
]


def _verbs_cover_everything() -> None:
    from stations.commands.verbs import VERBS

    assert {case[0] for case in CASES} == set(VERBS)


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_each_verb_reaches_a_real_station(daphne_server, make_station, protocol):
    from stations.commands.models import Command
    from stations.commands.verbs import CommandError

    _verbs_cover_everything()
    identity = f"VERBS-{protocol[4:].replace('.', '')}"
    cs = await sync_to_async(make_station)(identity, protocol)
    cases = [
        (verb, params, a16 if protocol == "ocpp1.6" else a201) for verb, params, a16, a201 in CASES
    ]
    if protocol == "ocpp2.0.1":
        cases = [c for c in cases if c[0] not in ("get_configuration", "set_configuration")]
        cases += CASES_201
    async with station(daphne_server.ws_url, identity, protocol=protocol) as client:
        await until_online(cs.pk)
        for verb, params, action in cases:
            if action is None:
                with pytest.raises(CommandError, match="does not exist in OCPP 1.6J"):
                    await acreate(cs, verb=verb, params=params)
                continue
            command = await acreate(cs, verb=verb, params=params)
            assert command.action == action, verb
            done = await until_final(command.pk)
            assert done.status == Command.Status.ACCEPTED, (verb, done.error_description)
            assert done.response is not None
            sent = json.loads(client.connection.received[-1])
            assert sent[0] == 2
            assert sent[2] == action
            assert sent[1] == done.message_id
            assert sent[3] == command.payload
        assert len(client.cp.received_calls) == len([c for c in cases if c[2]])
    # Leaving the context asserted that every frame the server sent was schema-valid.
