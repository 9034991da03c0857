"""A real OCPP charge point for tests: the `ocpp` library's charge-point side over `websockets`.

Every frame the server sends is recorded and checked against the official JSON schemas of the
negotiated version (CALLRESULTs against the response schema of the CALL they answer, CALLs
from the CSMS against their request schema, CALLERRORs for shape and a valid error code).
"""

from __future__ import annotations

import asyncio
import base64
import decimal
import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import websockets
from ocpp.messages import get_validator
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call_result as result16
from ocpp.v21 import call_result as result21
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call_result as result201

VERSION = {"ocpp1.6": "1.6", "ocpp2.0.1": "2.0.1", "ocpp2.1": "2.1"}
ERROR_CODES = {
    "ocpp1.6": {
        "NotImplemented",
        "NotSupported",
        "InternalError",
        "ProtocolError",
        "SecurityError",
        "FormationViolation",
        "PropertyConstraintViolation",
        "OccurenceConstraintViolation",
        "TypeConstraintViolation",
        "GenericError",
    },
    "ocpp2.0.1": {
        "FormatViolation",
        "GenericError",
        "InternalError",
        "MessageTypeNotSupported",
        "NotImplemented",
        "NotSupported",
        "OccurrenceConstraintViolation",
        "PropertyConstraintViolation",
        "ProtocolError",
        "RpcFrameworkError",
        "SecurityError",
        "TypeConstraintViolation",
    },
}
ERROR_CODES["ocpp2.1"] = ERROR_CODES["ocpp2.0.1"]


DECIMAL_CALLS_16 = {"SetChargingProfile", "RemoteStartTransaction"}


class SchemaViolation(AssertionError):
    pass


class RecordingConnection:
    """Wraps the websocket: records frames both ways and validates what the server sends."""

    def __init__(self, ws: Any, protocol: str):
        self.ws = ws
        self.protocol = protocol
        self.sent_actions: dict[str, str] = {}
        self.received: list[str] = []
        self.sent: list[str] = []
        self.violations: list[str] = []
        self.new_frame = asyncio.Condition()

    async def send(self, message: str) -> None:
        try:
            data = json.loads(message)
        except ValueError:
            data = None
        if isinstance(data, list) and len(data) > 2 and data[0] == 2:
            self.sent_actions[data[1]] = data[2]
        self.sent.append(message)
        await self.ws.send(message)

    async def recv(self) -> str:
        message = await self.ws.recv()
        self.check(message)
        self.received.append(message)
        async with self.new_frame:
            self.new_frame.notify_all()
        return message

    def check(self, message: str) -> None:
        version = VERSION[self.protocol]
        try:
            data = json.loads(message)
        except ValueError:
            self.violations.append(f"not JSON: {message}")
            return
        kind = data[0]
        if kind == 3:
            action = self.sent_actions.get(data[1])
            if action is None:
                if data[1] != "-1":
                    self.violations.append(f"CALLRESULT for no CALL of ours: {message}")
                return
            errors = list(get_validator(3, action, version).iter_errors(data[2]))
            if errors:
                self.violations.append(f"{action} response invalid: {errors[0].message}")
        elif kind == 2:
            payload = data[3]
            if version == "1.6" and data[2] in DECIMAL_CALLS_16:
                # As the library does: multipleOf 0.1 needs exact decimals, and the library
                # caches these validators built with Decimal.
                payload = json.loads(json.dumps(payload), parse_float=decimal.Decimal)
                validator = get_validator(2, data[2], version, parse_float=decimal.Decimal)
            else:
                validator = get_validator(2, data[2], version)
            errors = list(validator.iter_errors(payload))
            if errors:
                self.violations.append(f"{data[2]} request invalid: {errors[0].message}")
        elif kind == 4:
            if len(data) != 5 or data[2] not in ERROR_CODES[self.protocol]:
                self.violations.append(f"malformed CALLERROR: {message}")
            elif not isinstance(data[4], dict) or not isinstance(data[3], str):
                self.violations.append(f"malformed CALLERROR details: {message}")
        else:
            self.violations.append(f"unknown message type: {message}")

    async def wait_for_reply(self, message_id: str, timeout: float = 10.0) -> list[Any]:
        async def find() -> list[Any]:
            async with self.new_frame:
                while True:
                    for frame in self.received:
                        data = json.loads(frame)
                        if data[0] in (3, 4) and data[1] == message_id:
                            return data
                    await self.new_frame.wait()

        return await asyncio.wait_for(find(), timeout)


def _answering(action: str, default: Any) -> Any:
    """A handler that records the CSMS's CALL and answers `responses[action]` or the default
    (`default` is a function of the received snake_case payload)."""

    def handler(self: Any, **kwargs: Any) -> Any:
        return self._answer(action, kwargs, default(kwargs))

    # The library routes by function name, which must be the class attribute's name.
    handler.__name__ = "on_" + re.sub(r"(?<!^)(?=[A-Z])", "_", action).lower()
    return on(action)(handler)


def _accepted(result: Any, status: str = "Accepted") -> Any:
    return lambda payload: result(status=status)


class Station16(ChargePoint16):
    """1.6J charge point that also answers the CSMS's calls the way a simple charger would."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.received_calls: list[tuple[str, dict[str, Any]]] = []
        self.responses: dict[str, Any] = {}

    def _answer(self, action: str, payload: dict[str, Any], default: Any) -> Any:
        self.received_calls.append((action, payload))
        return self.responses.get(action, default)

    @on("SendLocalList")
    def on_send_local_list(self, **kwargs: Any) -> Any:
        return self._answer("SendLocalList", kwargs, result16.SendLocalList(status="Accepted"))

    @on("GetLocalListVersion")
    def on_get_local_list_version(self, **kwargs: Any) -> Any:
        return self._answer(
            "GetLocalListVersion", kwargs, result16.GetLocalListVersion(list_version=0)
        )

    @on("RemoteStartTransaction")
    def on_remote_start(self, **kwargs: Any) -> Any:
        return self._answer(
            "RemoteStartTransaction", kwargs, result16.RemoteStartTransaction(status="Accepted")
        )

    @on("RemoteStopTransaction")
    def on_remote_stop(self, **kwargs: Any) -> Any:
        return self._answer(
            "RemoteStopTransaction", kwargs, result16.RemoteStopTransaction(status="Accepted")
        )

    @on("Reset")
    def on_reset(self, **kwargs: Any) -> Any:
        return self._answer("Reset", kwargs, result16.Reset(status="Accepted"))

    on_unlock_connector = _answering(
        "UnlockConnector", _accepted(result16.UnlockConnector, "Unlocked")
    )
    on_change_availability = _answering(
        "ChangeAvailability", _accepted(result16.ChangeAvailability)
    )
    on_get_configuration = _answering(
        "GetConfiguration",
        lambda p: result16.GetConfiguration(
            configuration_key=[
                {"key": k, "readonly": False, "value": "1"} for k in p.get("key", [])
            ]
            or [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}],
        ),
    )
    on_change_configuration = _answering(
        "ChangeConfiguration", _accepted(result16.ChangeConfiguration)
    )
    on_trigger_message = _answering("TriggerMessage", _accepted(result16.TriggerMessage))
    on_extended_trigger_message = _answering(
        "ExtendedTriggerMessage", _accepted(result16.ExtendedTriggerMessage)
    )
    on_clear_cache = _answering("ClearCache", _accepted(result16.ClearCache))
    on_reserve_now = _answering("ReserveNow", _accepted(result16.ReserveNow))
    on_cancel_reservation = _answering("CancelReservation", _accepted(result16.CancelReservation))
    on_set_charging_profile = _answering(
        "SetChargingProfile", _accepted(result16.SetChargingProfile)
    )
    on_clear_charging_profile = _answering(
        "ClearChargingProfile", _accepted(result16.ClearChargingProfile)
    )
    on_get_composite_schedule = _answering(
        "GetCompositeSchedule", _accepted(result16.GetCompositeSchedule)
    )
    on_data_transfer = _answering("DataTransfer", _accepted(result16.DataTransfer))
    on_get_diagnostics = _answering(
        "GetDiagnostics", lambda p: result16.GetDiagnostics(file_name="diagnostics.log")
    )
    on_get_log = _answering(
        "GetLog", lambda p: result16.GetLog(status="Accepted", filename="log.txt")
    )
    on_update_firmware = _answering("UpdateFirmware", lambda p: result16.UpdateFirmware())
    on_signed_update_firmware = _answering(
        "SignedUpdateFirmware", _accepted(result16.SignedUpdateFirmware)
    )
    on_install_certificate = _answering(
        "InstallCertificate", _accepted(result16.InstallCertificate)
    )
    on_delete_certificate = _answering("DeleteCertificate", _accepted(result16.DeleteCertificate))
    on_get_installed_certificate_ids = _answering(
        "GetInstalledCertificateIds", _accepted(result16.GetInstalledCertificateIds)
    )
    on_certificate_signed = _answering("CertificateSigned", _accepted(result16.CertificateSigned))


class Station201(ChargePoint201):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.received_calls: list[tuple[str, dict[str, Any]]] = []
        self.responses: dict[str, Any] = {}

    def _answer(self, action: str, payload: dict[str, Any], default: Any) -> Any:
        self.received_calls.append((action, payload))
        return self.responses.get(action, default)

    @on("SendLocalList")
    def on_send_local_list(self, **kwargs: Any) -> Any:
        return self._answer("SendLocalList", kwargs, result201.SendLocalList(status="Accepted"))

    @on("GetLocalListVersion")
    def on_get_local_list_version(self, **kwargs: Any) -> Any:
        return self._answer(
            "GetLocalListVersion", kwargs, result201.GetLocalListVersion(version_number=0)
        )

    @on("RequestStartTransaction")
    def on_request_start(self, **kwargs: Any) -> Any:
        return self._answer(
            "RequestStartTransaction", kwargs, result201.RequestStartTransaction(status="Accepted")
        )

    @on("RequestStopTransaction")
    def on_request_stop(self, **kwargs: Any) -> Any:
        return self._answer(
            "RequestStopTransaction", kwargs, result201.RequestStopTransaction(status="Accepted")
        )

    @on("Reset")
    def on_reset(self, **kwargs: Any) -> Any:
        return self._answer("Reset", kwargs, result201.Reset(status="Accepted"))

    @on("CostUpdated")
    def on_cost_updated(self, **kwargs: Any) -> Any:
        return self._answer("CostUpdated", kwargs, result201.CostUpdated())

    @on("GetTransactionStatus")
    def on_get_transaction_status(self, **kwargs: Any) -> Any:
        # A station that knows nothing of the transaction and has nothing queued.
        default = result201.GetTransactionStatus(messages_in_queue=False)
        if kwargs.get("transaction_id"):
            default = result201.GetTransactionStatus(
                messages_in_queue=False, ongoing_indicator=False
            )
        return self._answer("GetTransactionStatus", kwargs, default)

    on_unlock_connector = _answering(
        "UnlockConnector", _accepted(result201.UnlockConnector, "Unlocked")
    )
    on_change_availability = _answering(
        "ChangeAvailability", _accepted(result201.ChangeAvailability)
    )
    on_set_variable_monitoring = _answering(
        "SetVariableMonitoring",
        lambda p: result201.SetVariableMonitoring(
            set_monitoring_result=[
                {
                    "id": item.get("id", 100 + n),
                    "status": "Accepted",
                    "type": item["type"],
                    "severity": item["severity"],
                    "component": item["component"],
                    "variable": item["variable"],
                }
                for n, item in enumerate(p["set_monitoring_data"])
            ]
        ),
    )
    on_set_monitoring_base = _answering("SetMonitoringBase", _accepted(result201.SetMonitoringBase))
    on_set_monitoring_level = _answering(
        "SetMonitoringLevel", _accepted(result201.SetMonitoringLevel)
    )
    on_clear_variable_monitoring = _answering(
        "ClearVariableMonitoring",
        lambda p: result201.ClearVariableMonitoring(
            clear_monitoring_result=[{"id": i, "status": "Accepted"} for i in p["id"]]
        ),
    )
    on_get_variables = _answering(
        "GetVariables",
        lambda p: result201.GetVariables(
            get_variable_result=[
                {
                    "attribute_status": "Accepted",
                    "component": item["component"],
                    "variable": item["variable"],
                    "attribute_value": "1",
                }
                for item in p["get_variable_data"]
            ]
        ),
    )
    on_set_variables = _answering(
        "SetVariables",
        lambda p: result201.SetVariables(
            set_variable_result=[
                {
                    "attribute_status": "Accepted",
                    "component": item["component"],
                    "variable": item["variable"],
                }
                for item in p["set_variable_data"]
            ]
        ),
    )
    on_get_base_report = _answering("GetBaseReport", _accepted(result201.GetBaseReport))
    on_trigger_message = _answering("TriggerMessage", _accepted(result201.TriggerMessage))
    on_clear_cache = _answering("ClearCache", _accepted(result201.ClearCache))
    on_reserve_now = _answering("ReserveNow", _accepted(result201.ReserveNow))
    on_cancel_reservation = _answering("CancelReservation", _accepted(result201.CancelReservation))
    on_set_charging_profile = _answering(
        "SetChargingProfile", _accepted(result201.SetChargingProfile)
    )
    on_clear_charging_profile = _answering(
        "ClearChargingProfile", _accepted(result201.ClearChargingProfile)
    )
    on_get_composite_schedule = _answering(
        "GetCompositeSchedule", _accepted(result201.GetCompositeSchedule)
    )
    on_data_transfer = _answering("DataTransfer", _accepted(result201.DataTransfer))
    on_get_log = _answering(
        "GetLog", lambda p: result201.GetLog(status="Accepted", filename="log.txt")
    )
    on_update_firmware = _answering("UpdateFirmware", _accepted(result201.UpdateFirmware))
    on_customer_information = _answering(
        "CustomerInformation", _accepted(result201.CustomerInformation)
    )
    on_set_display_message = _answering("SetDisplayMessage", _accepted(result201.SetDisplayMessage))
    on_get_display_messages = _answering(
        "GetDisplayMessages", _accepted(result201.GetDisplayMessages)
    )
    on_clear_display_message = _answering(
        "ClearDisplayMessage", _accepted(result201.ClearDisplayMessage)
    )
    on_install_certificate = _answering(
        "InstallCertificate", _accepted(result201.InstallCertificate)
    )
    on_delete_certificate = _answering("DeleteCertificate", _accepted(result201.DeleteCertificate))
    on_get_installed_certificate_ids = _answering(
        "GetInstalledCertificateIds", _accepted(result201.GetInstalledCertificateIds)
    )
    on_certificate_signed = _answering("CertificateSigned", _accepted(result201.CertificateSigned))
    on_set_network_profile = _answering("SetNetworkProfile", _accepted(result201.SetNetworkProfile))


class Station21(Station201):
    """An OCPP 2.1 station: the 2.0.1 one (the library has no 2.1 charge point), validating
    with the 2.1 schemas and answering the 2.1 tariff calls."""

    _ocpp_version = "2.1"

    @on("SetDefaultTariff")
    def on_set_default_tariff(self, **kwargs: Any) -> Any:
        return self._answer(
            "SetDefaultTariff", kwargs, result21.SetDefaultTariff(status="Accepted")
        )

    @on("ChangeTransactionTariff")
    def on_change_transaction_tariff(self, **kwargs: Any) -> Any:
        return self._answer(
            "ChangeTransactionTariff", kwargs, result21.ChangeTransactionTariff(status="Accepted")
        )

    @on("NotifyAllowedEnergyTransfer")
    def on_notify_allowed_energy_transfer(self, **kwargs: Any) -> Any:
        return self._answer(
            "NotifyAllowedEnergyTransfer",
            kwargs,
            result21.NotifyAllowedEnergyTransfer(status="Accepted"),
        )


class Client:
    def __init__(self, ws: Any, connection: RecordingConnection, cp: Any, protocol: str):
        self.ws = ws
        self.connection = connection
        self.cp = cp
        self.protocol = protocol

    async def raw(
        self, frame: str | list[Any], message_id: str | None = None, timeout: float = 10.0
    ) -> list[Any]:
        """Send a raw frame (text or list) and return the server's reply to it."""
        text = frame if isinstance(frame, str) else json.dumps(frame)
        if message_id is None and isinstance(frame, list) and len(frame) > 1:
            message_id = frame[1]
        await self.connection.send(text)
        return await self.connection.wait_for_reply(message_id or "-1", timeout)

    def assert_schema_valid(self) -> None:
        if self.connection.violations:
            raise SchemaViolation("; ".join(self.connection.violations))


def basic_auth(identity: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{identity}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@asynccontextmanager
async def station(
    ws_url: str,
    identity: str,
    *,
    protocol: str = "ocpp1.6",
    password: str | None = None,
    subprotocols: list[str] | None = None,
    headers: dict[str, str] | None = None,
    local_addr: tuple[str, int] | None = None,
    ssl: Any = None,
) -> AsyncIterator[Client]:
    """Connect a charge point; on exit, assert that every server frame was schema-valid.
    `local_addr`: the source address (127.x.y.z), as a charger behind its own address."""
    extra = dict(headers or {})
    if password is not None:
        extra.update(basic_auth(identity, password))
    # Passed on to the event loop's create_connection.
    socket_options: dict[str, Any] = {"local_addr": local_addr} if local_addr else {}
    ws = await websockets.connect(
        f"{ws_url}/{identity}",
        subprotocols=[websockets.Subprotocol(p) for p in subprotocols or [protocol]],
        additional_headers=extra,
        open_timeout=10,
        **socket_options,
        ssl=ssl,
    )
    negotiated = ws.subprotocol or protocol
    connection = RecordingConnection(ws, negotiated)
    classes: dict[str, type[Station16] | type[Station201]] = {
        "ocpp1.6": Station16,
        "ocpp2.1": Station21,
    }
    cls = classes.get(negotiated, Station201)
    cp = cls(identity, connection, response_timeout=15)
    cp._unique_id_generator = uuid.uuid4
    task = asyncio.create_task(cp.start())
    client = Client(ws, connection, cp, negotiated)
    try:
        yield client
    finally:
        task.cancel()
        await ws.close()
        try:
            await task
        except (asyncio.CancelledError, websockets.ConnectionClosed):
            pass
    client.assert_schema_valid()
