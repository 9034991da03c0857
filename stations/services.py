"""Writes of the stations domain: admission, boot, connection state, status, reports.

Called by the OCPP edge (through database_sync_to_async) and by admin/API edges. Every function
is keyword-only, version-neutral and atomic.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from cpo.outbox import webhooks
from stations import secret_keys, signals
from stations.models import (
    ChargingStation,
    Connector,
    ConnectorStatusEvent,
    DeviceModelVariable,
    Evse,
    Location,
    OcppMessage,
    SecurityEvent,
    StationBoot,
    StationCertificate,
    StationConnection,
    StationEvent,
    StationNotification,
)


@dataclass(frozen=True)
class Admission:
    """The answer to a websocket handshake of a station."""

    accepted: bool
    reason: str = ""
    station_id: int | None = None
    registration_status: str = ""
    trace_enabled: bool = False
    cost_display_enabled: bool = False
    security_profile: int = 0


def parse_basic_auth(header: bytes | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith(b"basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    if not sep:
        return None
    return username, password


def client_cert_identity(subject: str) -> str:
    """The CN of a client-certificate subject DN as forwarded by the TLS proxy."""
    for part in subject.replace("/", ",").split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().upper() == "CN":
            return value.strip()
    return ""


def _password_matches(station: ChargingStation, password: str) -> bool:
    if station.check_password(password):
        return True
    # The 1.6 security whitepaper's AuthorizationKey travels hex-encoded: a station that
    # sends the hex form itself as its password means the same key.
    if len(password) >= 32 and len(password) % 2 == 0:
        try:
            decoded = bytes.fromhex(password).decode("utf-8")
        except ValueError:
            return False
        return decoded.isprintable() and station.check_password(decoded)
    return False


@transaction.atomic
def station_admit(
    *,
    identity: str,
    basic_auth: tuple[str, str] | None,
    cert_identity: str | None,
    tls: bool = False,
    cert_serial: str = "",
) -> Admission:
    """Decide whether a websocket handshake of `identity` is accepted.

    1. A client certificate (profile 3) forwarded by a trusted proxy must name this identity,
       and must not be one of ours that was revoked.
    2. Otherwise a station with a password requires HTTP Basic with username = identity and
       the matching password (profile 1 on plain ws, profile 2 over TLS).
    3. The connection's profile must be at least the station's stored one (raised by an
       upgrade, never lowered).
    4. Unknown identities are refused, or created Pending when auto-registration is on.
    """
    station = ChargingStation.objects.filter(identity=identity).first()
    if station is None:
        if not settings.OCPP_AUTO_REGISTER:
            return Admission(False, "unknown identity")
        station = ChargingStation.objects.create(
            identity=identity,
            registration_status=ChargingStation.RegistrationStatus.PENDING,
            auto_registered=True,
        )
    profile = 0
    if cert_identity is not None:
        if cert_identity != identity:
            return Admission(False, "client certificate does not name this station")
        if (
            cert_serial
            and StationCertificate.objects.filter(
                serial=cert_serial.lower().lstrip("0") or "0",
                status=StationCertificate.Status.REVOKED,
            ).exists()
        ):
            return Admission(False, "client certificate revoked")
        profile = 3
    elif station.password_hash:
        if basic_auth is None:
            return Admission(False, "credentials required")
        username, password = basic_auth
        if username != identity or not _password_matches(station, password):
            return Admission(False, "wrong credentials")
        profile = 2 if tls else 1
    if profile < station.security_profile:
        return Admission(
            False, f"security profile {station.security_profile} required, connected on {profile}"
        )
    return Admission(
        True,
        station_id=station.pk,
        registration_status=station.registration_status,
        trace_enabled=station.trace_enabled,
        cost_display_enabled=station.cost_display_enabled,
        security_profile=profile,
    )


def _station_event(
    type: str, station_id: int, identity: str | None, *, at: datetime, reason: str
) -> None:
    """station.online / station.offline to the webhook endpoints that want it (the identity
    is looked up only when one does)."""

    def payload() -> dict[str, Any]:
        name = identity
        if name is None:
            name = ChargingStation.objects.values_list("identity", flat=True).get(pk=station_id)
        return {"station": name, "at": webhooks.iso(at), "reason": reason[:100]}

    # One station's online and offline reach an endpoint in the order they happened.
    webhooks.event_publish(type=type, payload=payload, subject=f"station:{station_id}")


def _state_changed(station_ids: list[int]) -> None:
    signals.station_state_changed.send(sender=ChargingStation, station_ids=station_ids)


def _network_changed(location_ids: Sequence[int | None]) -> None:
    ids = sorted({pk for pk in location_ids if pk is not None})
    if ids:
        signals.network_changed.send(sender=Location, location_ids=ids, station_ids=[])


@transaction.atomic
def station_connected(
    *,
    station_id: int,
    protocol: str,
    channel_name: str,
    remote_addr: str,
    node: str,
    security_profile: int,
) -> tuple[int, str]:
    """Record a new connection; returns its id and the channel of the connection it replaces.

    The row lock makes "which connection is current" a single decision even when the same
    station reconnects to two nodes at once: the last one to commit wins and is told whom to
    close.
    """
    now = timezone.now()
    current = ChargingStation.objects.select_for_update().get(pk=station_id)
    replaced = current.channel_name if current.is_online else ""
    ChargingStation.objects.filter(pk=station_id).update(
        is_online=True,
        protocol=protocol,
        channel_name=channel_name,
        node=node,
        connected_at=now,
        last_seen_at=now,
    )
    StationConnection.objects.filter(station_id=station_id, disconnected_at=None).update(
        disconnected_at=now, close_reason="replaced by a newer connection"
    )
    connection = StationConnection.objects.create(
        station_id=station_id,
        protocol=protocol,
        remote_addr=remote_addr,
        node=node,
        security_profile=security_profile,
        connected_at=now,
    )
    if not current.is_online:
        _station_event("station.online", station_id, current.identity, at=now, reason="connected")
        _state_changed([station_id])
    return connection.pk, replaced


@transaction.atomic
def station_disconnected(
    *, station_id: int, connection_id: int, channel_name: str, reason: str
) -> None:
    now = timezone.now()
    # Only the connection that still holds the station marks it offline: when a newer
    # connection replaced this one, the station stays online. The station's row comes first,
    # in the order station_connected locks the two: the other order deadlocks a reconnect
    # with the old connection's close on PostgreSQL (an HTTP 500 at the reconnect's handshake,
    # seen in tests/faults/test_reconnect_storm.py).
    went_offline = ChargingStation.objects.filter(pk=station_id, channel_name=channel_name).update(
        is_online=False, channel_name="", last_seen_at=now
    )
    StationConnection.objects.filter(pk=connection_id, disconnected_at=None).update(
        disconnected_at=now, close_reason=reason[:100]
    )
    if went_offline:
        _station_event("station.offline", station_id, None, at=now, reason=reason)
        _state_changed([station_id])


@transaction.atomic
def stations_node_down(*, node: str, reason: str) -> int:
    """Mark offline every station whose socket a node held when it stopped or died.

    The run command calls this as soon as it sees its daphne child gone, and before starting
    one in its place: a crashed process runs no disconnect handler, and the heartbeat sweep
    would find its stations only after several missed intervals. A station that has already
    reconnected to another node holds that node's name and is left alone.
    """
    now = timezone.now()
    stations = dict(
        ChargingStation.objects.filter(is_online=True, node=node).values_list("pk", "identity")
    )
    if not stations:
        return 0
    station_ids = list(stations)
    # Station rows before connection rows, the order station_connected locks them in.
    marked = ChargingStation.objects.filter(pk__in=station_ids, is_online=True, node=node).update(
        is_online=False, channel_name=""
    )
    StationConnection.objects.filter(
        station_id__in=station_ids, node=node, disconnected_at=None
    ).update(disconnected_at=now, close_reason=reason[:100])
    for pk, identity in stations.items():
        _station_event("station.offline", pk, identity, at=now, reason=reason)
    _state_changed(station_ids)
    return marked


def station_seen(*, station_id: int) -> None:
    ChargingStation.objects.filter(pk=station_id).update(last_seen_at=timezone.now())


@dataclass(frozen=True)
class BootResult:
    status: str
    interval: int


@transaction.atomic
def station_booted(
    *,
    station_id: int,
    vendor: str,
    model: str,
    serial_number: str = "",
    firmware_version: str = "",
    iccid: str = "",
    imsi: str = "",
    meter_type: str = "",
    meter_serial_number: str = "",
    reason: str = "",
) -> BootResult:
    station = ChargingStation.objects.select_for_update().get(pk=station_id)
    station.vendor = vendor[:50]
    station.model = model[:50]
    station.serial_number = serial_number[:50]
    station.firmware_version = firmware_version[:50]
    station.iccid = iccid[:20]
    station.imsi = imsi[:20]
    station.meter_type = meter_type[:25]
    station.meter_serial_number = meter_serial_number[:25]
    station.boot_reason = reason[:32]
    station.last_boot_at = timezone.now()
    station.last_seen_at = station.last_boot_at
    station.save()
    StationBoot.objects.create(station=station, booted_at=station.last_boot_at, reason=reason[:32])
    interval = station.heartbeat_interval or settings.OCPP_HEARTBEAT_INTERVAL
    if station.registration_status != ChargingStation.RegistrationStatus.ACCEPTED:
        # Not accepted: the interval is the wait before the next BootNotification.
        interval = min(interval, 60)
    return BootResult(station.registration_status, interval)


@transaction.atomic
def station_accept(*, station: ChargingStation) -> None:
    """An operator accepts a Pending station; it is Accepted at its next BootNotification."""
    ChargingStation.objects.filter(pk=station.pk).update(
        registration_status=ChargingStation.RegistrationStatus.ACCEPTED
    )


@transaction.atomic
def station_evses_create(*, station: ChargingStation, count: int) -> int:
    """Give a station EVSEs 1..count with connector 1 each; returns how many were created.

    This is the network's layout of a 1.6 station (its connector N is EVSE N, connector 1:
    `stations.ocpp.v16.addressing`) and the usual one of a 2.0.1 station. EVSEs and connectors
    that exist are kept; more connectors per EVSE are added on the station page, and a
    station's own status reports add any connector it has that the network did not know.
    """
    created = 0
    for number in range(1, count + 1):
        evse, _ = Evse.objects.get_or_create(
            station=station, evse_id=number, defaults={"uid": f"{station.identity}-{number}"}
        )
        _, new = Connector.objects.get_or_create(station=station, evse=evse, connector_id=1)
        created += int(new)
    return created


def _evse_for(station_id: int, evse_id: int) -> Evse:
    evse, _ = Evse.objects.get_or_create(
        station_id=station_id,
        evse_id=evse_id,
        defaults={"uid": f"{ChargingStation.objects.get(pk=station_id).identity}-{evse_id}"},
    )
    return evse


@transaction.atomic
def connector_status_changed(
    *,
    station_id: int,
    evse_id: int,
    connector_id: int,
    status: str,
    timestamp: datetime | None,
    error_code: str = "",
    info: str = "",
    vendor_id: str = "",
    vendor_error_code: str = "",
) -> None:
    """Record a status report; evse_id 0 is the station itself (1.6 connector 0).

    History keeps every report; the live status only moves forward in charger time, so a
    late, queued report never overwrites a newer one. A report without the station's
    timestamp (optional in 1.6) is stored at its receive time, exactly: `timestamp ==
    received_at` is how the rating tells it from a charger's time.
    """
    received_at = timezone.now()
    timestamp = timestamp or received_at
    ConnectorStatusEvent.objects.create(
        received_at=received_at,
        station_id=station_id,
        evse_id=evse_id,
        connector_id=connector_id,
        status=status,
        error_code=error_code,
        info=info[:255],
        vendor_id=vendor_id[:255],
        vendor_error_code=vendor_error_code[:50],
        timestamp=timestamp,
    )
    if evse_id == 0:
        ChargingStation.objects.filter(pk=station_id).update(status=status, error_code=error_code)
        _state_changed([station_id])
        return
    newer = Q(status_at__isnull=True) | Q(status_at__lte=timestamp)
    connector_no = connector_id or 1
    updated = (
        Connector.objects.filter(
            station_id=station_id, evse__evse_id=evse_id, connector_id=connector_no
        )
        .filter(newer)
        .update(status=status, error_code=error_code, info=info[:255], status_at=timestamp)
    )
    learned = False
    if (
        not updated
        and not Connector.objects.filter(
            station_id=station_id, evse__evse_id=evse_id, connector_id=connector_no
        ).exists()
    ):
        # First report of a connector the station was not configured with: learn it.
        evse = _evse_for(station_id, evse_id)
        Connector.objects.create(
            station_id=station_id,
            evse=evse,
            connector_id=connector_no,
            status=status,
            error_code=error_code,
            info=info[:255],
            status_at=timestamp,
        )
        learned = True
    Evse.objects.filter(station_id=station_id, evse_id=evse_id).filter(newer).update(
        status=status, status_at=timestamp
    )
    if learned:
        signals.network_changed.send(sender=Location, location_ids=[], station_ids=[station_id])
    elif updated:
        signals.evse_status_changed.send(sender=Evse, station_id=station_id, evse_id=evse_id)


def notification_record(
    *,
    station_id: int,
    action: str,
    payload: dict[str, Any],
    status: str = "",
    request_id: int | None = None,
) -> None:
    StationNotification.objects.create(
        station_id=station_id,
        action=action,
        status=status[:50],
        request_id=request_id,
        payload=payload,
    )


def security_event_record(
    *, station_id: int, type: str, timestamp: datetime, tech_info: str = ""
) -> None:
    SecurityEvent.objects.create(
        station_id=station_id, type=type[:50], timestamp=timestamp, tech_info=tech_info[:255]
    )


# Security events the CSMS records about a station itself (not reported by it), in the same
# list: the operator reads them where the station's own security events are.
CSMS_EVENT_PREFIX = "CSMS:"


def station_incident_record(*, station_id: int, type: str, tech_info: str = "") -> None:
    """An incident the edge saw on a station's connection (a rate limit exceeded, ...)."""
    now = timezone.now()
    SecurityEvent.objects.create(
        station_id=station_id,
        type=f"{CSMS_EVENT_PREFIX}{type}"[:50],
        timestamp=now,
        received_at=now,
        tech_info=tech_info[:255],
    )


@transaction.atomic
def device_events_record(*, station_id: int, events: list[dict[str, Any]]) -> None:
    """Store 2.0.1 NotifyEvent data; a fault on a connector's availability also moves its
    live status, since 2.0.1 StatusNotification carries no error code."""
    rows = []
    for event in secret_keys.mask(events):
        component = event.get("component", {})
        variable = event.get("variable", {})
        evse = component.get("evse") or {}
        rows.append(
            StationEvent(
                station_id=station_id,
                event_id=event["eventId"],
                timestamp=event["timestamp"],
                trigger=event["trigger"],
                event_notification_type=event["eventNotificationType"],
                component=component.get("name", "")[:50],
                component_instance=component.get("instance", "")[:50],
                evse_id=evse.get("id"),
                connector_id=evse.get("connectorId"),
                variable=variable.get("name", "")[:50],
                variable_instance=variable.get("instance", "")[:50],
                actual_value=str(event.get("actualValue", ""))[:2500],
                cause=event.get("cause"),
                tech_code=event.get("techCode", "")[:50],
                tech_info=event.get("techInfo", "")[:500],
                cleared=bool(event.get("cleared", False)),
                transaction_id=event.get("transactionId", "")[:36],
            )
        )
    StationEvent.objects.bulk_create(rows)
    for row in rows:
        if row.variable == "Problem" and row.evse_id:
            faulted = str(row.actual_value).lower() == "true" and not row.cleared
            Connector.objects.filter(
                station_id=station_id,
                evse__evse_id=row.evse_id,
                **({"connector_id": row.connector_id} if row.connector_id else {}),
            ).update(error_code=(row.tech_code or "Problem") if faulted else "")


@transaction.atomic
def device_report_record(*, station_id: int, report_data: list[dict[str, Any]]) -> None:
    """Upsert the variables of a 2.0.1 NotifyReport part (reassembled by seqNo naturally,
    because every part upserts its own variables)."""
    now = timezone.now()
    for item in secret_keys.mask(report_data):
        component = item.get("component", {})
        variable = item.get("variable", {})
        evse = component.get("evse") or {}
        characteristics = item.get("variableCharacteristics") or {}
        for attribute in item.get("variableAttribute", []):
            DeviceModelVariable.objects.update_or_create(
                station_id=station_id,
                component=component.get("name", "")[:50],
                component_instance=component.get("instance", "")[:50],
                evse_id=evse.get("id", 0),
                connector_id=evse.get("connectorId", 0),
                variable=variable.get("name", "")[:50],
                variable_instance=variable.get("instance", "")[:50],
                attribute_type=attribute.get("type", "Actual"),
                defaults={
                    "value": str(attribute.get("value", ""))[:2500],
                    "mutability": attribute.get("mutability", ""),
                    "persistent": attribute.get("persistent"),
                    "constant": attribute.get("constant"),
                    "characteristics": characteristics,
                    "updated_at": now,
                },
            )


def message_log_write(
    *, station_id: int | None, identity: str, entries: list[tuple[str, str, bool]]
) -> None:
    """Append raw frames to the message log: (direction, frame, is_error) per entry; secret
    values masked (`stations.secret_keys`)."""
    import json

    rows = []
    for direction, raw, is_error in entries:
        if is_error and len(raw) > 64 * LOGGED_ERROR_FRAME_CHARS:
            # Not worth parsing whole (the edge refused it for its size): its start is kept.
            raw = _frame_for_log(raw)
        try:
            frame = secret_keys.mask_frame(raw)
        except Exception:  # the log writer must never fail: a frame it cannot read is withheld
            frame = f"[{len(raw)} characters withheld: the frame could not be read]"
        message_type, message_id, action = None, "", ""
        try:
            data = json.loads(frame)
        except (ValueError, TypeError, RecursionError):
            data = None
        if isinstance(data, list) and data:
            # Only what the columns can hold: a bool is an int in Python, -1 or 2**64 break
            # the positive small integer's check, a frame may stop after its type.
            if type(data[0]) is int and 0 <= data[0] <= 32767:
                message_type = data[0]
            if len(data) > 1 and isinstance(data[1], str | int):
                message_id = str(data[1])[:64]
            if message_type == 2 and len(data) > 2 and isinstance(data[2], str):
                action = data[2]
        rows.append(
            OcppMessage(
                station_id=station_id,
                identity=_no_nul(identity)[:48],
                direction=direction,
                message_type=message_type,
                message_id=_no_nul(message_id),
                action=_no_nul(action)[:50],
                # PostgreSQL text cannot hold NUL: kept visible, escaped.
                frame=_no_nul(_frame_for_log(frame) if is_error else frame),
                is_error=is_error,
            )
        )
    OcppMessage.objects.bulk_create(rows)


# An erroneous frame is kept up to this many characters, then its size: a station sending
# invalid megabyte frames must not fill the log (traced frames are kept whole).
LOGGED_ERROR_FRAME_CHARS = 2048


def _frame_for_log(text: str) -> str:
    if len(text) <= LOGGED_ERROR_FRAME_CHARS:
        return text
    size = len(text.encode("utf-8", errors="replace"))
    return f"{text[:LOGGED_ERROR_FRAME_CHARS]}… [truncated: {size} bytes in all]"


def _no_nul(text: str) -> str:
    return text.replace("\x00", "\\u0000") if "\x00" in text else text


def message_log_prune(*, now: datetime | None = None) -> int:
    cutoff = (now or timezone.now()) - timedelta(days=settings.OCPP_MESSAGE_LOG_RETENTION_DAYS)
    deleted, _ = OcppMessage.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def stations_mark_offline(*, now: datetime | None = None) -> int:
    """Mark stations offline that missed the configured number of heartbeat intervals.

    The socket may still look open (a half-open TCP connection after a mobile network drop),
    but a station silent for that long cannot be commanded or trusted to be charging.
    """
    now = now or timezone.now()
    missed = settings.OCPP_OFFLINE_AFTER_MISSED_HEARTBEATS
    default_interval = settings.OCPP_HEARTBEAT_INTERVAL
    count = 0
    candidates = ChargingStation.objects.filter(is_online=True).values_list(
        "pk", "last_seen_at", "heartbeat_interval"
    )
    for pk, last_seen, interval in candidates:
        # last_seen_at is written at most every OCPP_LAST_SEEN_WRITE_INTERVAL seconds.
        limit = timedelta(
            seconds=max(
                (interval or default_interval) * missed, 2 * settings.OCPP_LAST_SEEN_WRITE_INTERVAL
            )
        )
        if last_seen is None or now - last_seen > limit:
            with transaction.atomic():
                marked = ChargingStation.objects.filter(pk=pk, is_online=True).update(
                    is_online=False
                )
                if marked:
                    _station_event("station.offline", pk, None, at=now, reason="missed heartbeats")
                    _state_changed([pk])
            count += marked
    return count


# --- Writes of the operator's edges (admin, API): sites and stations ---------------------------

LOCATION_FIELDS = (
    "name",
    "address",
    "postal_code",
    "city",
    "country",
    "latitude",
    "longitude",
    "time_zone",
    "publish",
)
STATION_FIELDS = (
    "identity",
    "location",
    "protocol",
    "registration_status",
    "heartbeat_interval",
    "cost_display_enabled",
    "trace_enabled",
)
# A rotated password: OCPP's BasicAuthPassword allows 16-40 characters of its "passwordString".
ROTATED_PASSWORD_LENGTH = 32


def _apply(obj: Any, data: dict[str, Any], fields: tuple[str, ...]) -> None:
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"unknown fields: {sorted(unknown)}")
    for name, value in data.items():
        setattr(obj, name, value)
    obj.full_clean()
    obj.save()


@transaction.atomic
def location_create(*, data: dict[str, Any]) -> Location:
    location = Location()
    _apply(location, data, LOCATION_FIELDS)
    _network_changed([location.pk])
    return location


@transaction.atomic
def location_update(*, location: Location, data: dict[str, Any]) -> Location:
    location = Location.objects.select_for_update().get(pk=location.pk)
    _apply(location, data, LOCATION_FIELDS)
    _network_changed([location.pk])
    return location


def station_password_validate(password: str) -> None:
    """The station password rule of the panel and the API (OCPP_STATION_PASSWORD_MIN_LENGTH)."""
    minimum = settings.OCPP_STATION_PASSWORD_MIN_LENGTH
    if len(password) < minimum:
        raise ValidationError(
            {
                "password": ValidationError(
                    f"The password has {len(password)} characters; stations need at least "
                    f"{minimum} here. The minimum is the setting "
                    "OCPP_STATION_PASSWORD_MIN_LENGTH (16 by default, as OCPP 2.0.1 and the 1.6 "
                    "security extension require); lower it for legacy OCPP 1.6 chargers that "
                    "ship with a shorter password.",
                    code="min_length",
                )
            }
        )
    if len(password) > 40:
        raise ValidationError(
            {"password": ValidationError("At most 40 characters (OCPP).", code="max_length")}
        )


@transaction.atomic
def station_create(
    *, data: dict[str, Any], password: str = "", connector_count: int = 0
) -> ChargingStation:
    """A station the operator expects: its protocol, site and HTTP Basic password (optional),
    with EVSEs 1..connector_count, connector 1 each."""
    station = ChargingStation()
    if password:
        station_password_validate(password)
        station.set_password(password)
    _apply(station, data, STATION_FIELDS)
    if connector_count:
        station_evses_create(station=station, count=connector_count)
    _network_changed([station.location_id])
    return station


@transaction.atomic
def station_update(*, station: ChargingStation, data: dict[str, Any]) -> ChargingStation:
    """The operator's fields of a station; its identity never changes (the charger dials it)."""
    station = ChargingStation.objects.select_for_update().get(pk=station.pk)
    if "identity" in data and data["identity"] != station.identity:
        raise ValidationError(
            {"identity": ValidationError("A station's identity never changes.", code="immutable")}
        )
    before = station.location_id
    _apply(station, data, STATION_FIELDS)
    _network_changed([before, station.location_id])
    return station


@transaction.atomic
def station_password_set(*, station: ChargingStation, password: str | None) -> str:
    """Set the station's HTTP Basic password, or rotate it (password None: a random one).

    Returns the password, which is stored only as a salted hash: the caller shows it once.
    The station learns a rotated password from the operator (or a SetVariables /
    ChangeConfiguration command); until then it is refused at its next connection.
    """
    if password is None:
        password = secrets.token_urlsafe(ROTATED_PASSWORD_LENGTH)[:ROTATED_PASSWORD_LENGTH]
    station_password_validate(password)
    locked = ChargingStation.objects.select_for_update().get(pk=station.pk)
    locked.set_password(password)
    locked.save(update_fields=["password_hash", "updated_at"])
    station.password_hash = locked.password_hash
    return password


@transaction.atomic
def station_registration_set(*, station: ChargingStation, status: str) -> ChargingStation:
    """Accept a station, or set it back to Pending (or Rejected): the station is told at its
    next BootNotification."""
    if status not in ChargingStation.RegistrationStatus.values:
        raise ValidationError(
            {"registration_status": ValidationError(f"Unknown status {status!r}.", code="invalid")}
        )
    ChargingStation.objects.filter(pk=station.pk).update(
        registration_status=status, updated_at=timezone.now()
    )
    station.refresh_from_db()
    _network_changed([station.location_id])
    return station
