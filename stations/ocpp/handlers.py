"""What the 1.6J and 2.0.1 handlers share: routing of actions to coroutines, registration
gating, notifications and the charger's clock."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from stations import services as network
from stations.commands import jobs, security
from stations.energy import triggers as energy
from stations.ocpp import limits, load
from stations.ocpp.db import db
from stations.ocpp.protocol import OcppError

if TYPE_CHECKING:
    from stations.ocpp.consumer import OcppConsumer

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def now_iso() -> str:
    return timezone.now().isoformat().replace("+00:00", "Z")


def parse_time(value: str | None) -> datetime:
    """Charger timestamps; a missing or unreadable one is replaced by the time of receipt."""
    return parse_time_or_none(value) or timezone.now()


def parse_time_or_none(value: str | None) -> datetime | None:
    """A charger timestamp, or None when the message has none (or none readable)."""
    if value:
        parsed = parse_datetime(value)
        if parsed is not None:
            if timezone.is_naive(parsed):
                parsed = timezone.make_aware(parsed, UTC)
            return parsed
    return None


class BaseHandlers:
    """One coroutine per charger-initiated action, named as the action; each returns the
    response payload. Subclasses add the actions of their OCPP version."""

    def __init__(self, consumer: OcppConsumer):
        self.consumer = consumer
        # What the edge dropped from the transaction message being handled (absurd values,
        # stations.ocpp.bounds): the session is flagged with it.
        self.anomalies: tuple[str, ...] = ()

    @property
    def station_id(self) -> int:
        return self.consumer.station_id

    def handler_for(self, action: str) -> Handler | None:
        # Actions are CamelCase; nothing else on the class is reachable from the wire.
        if not action[:1].isupper():
            return None
        return getattr(self, action, None)

    async def answered(self, action: str, request: dict[str, Any], response: Any) -> None:
        """A station answered one of our calls (already recorded on its command): the
        version's handlers act on what the answer means for the domain, if anything."""

    async def sign_certificate(self, csr: str, certificate_type: str = "") -> dict[str, Any]:
        """SignCertificate (2.0.1 A02/A03, 1.6 security extension): a CSR we sign is answered
        Accepted and, once that answer is sent, signed by our CA with CertificateSigned queued;
        one we do not (wrong CN or O, weak key or hash) is answered Rejected."""
        csr_id, refused = await db(security.csr_receive)(
            station_id=self.station_id, csr=csr, certificate_type=certificate_type
        )
        if refused:
            return {"status": "Rejected"}
        self.consumer.after_reply.append((security.csr_sign, {"csr_id": csr_id}))
        return {"status": "Accepted"}

    def boot_deferred(self) -> dict[str, Any] | None:
        """A BootNotification arriving while the node is saturated (stations.ocpp.load):
        Pending with a jittered interval, at once and without a database call; the station
        record stays as it was, and until it boots again the connection is Pending (only
        BootNotification and Heartbeat are answered). None: boot as usual."""
        interval = load.boot_deferral()
        if interval is None:
            return None
        self.consumer.registration_status = "Pending"
        limits.log_throttled(
            logger,
            "boot-deferred",
            logging.WARNING,
            "node saturated (%d database calls in flight): BootNotification of %s answered "
            "Pending, boot again in %d s (%d deferred so far)",
            load.LOAD.in_flight,
            self.consumer.identity,
            interval,
            load.LOAD.boots_deferred,
        )
        return {"status": "Pending", "currentTime": now_iso(), "interval": interval}

    @staticmethod
    def ensure_allowed(action: str, registration_status: str) -> None:
        """Before a station is Accepted it may only boot and heartbeat (1.6J errata:
        SecurityError; 2.0.1 alike)."""
        if registration_status != "Accepted" and action not in ("BootNotification", "Heartbeat"):
            raise OcppError(
                "SecurityError",
                f"Station is {registration_status}: only BootNotification and Heartbeat are "
                "accepted",
            )

    async def energy_notify(self, reason: str) -> None:
        """Tell energy management, when the station is managed: the check is a lookup in a
        per-process map, so stations on sites without energy management cost no query."""
        sites = energy.managed_sites() if energy.managed_cache_fresh() else None
        if sites is None:
            sites = await db(energy.managed_sites)()
        if self.station_id in sites:
            await db(energy.station_event)(self.station_id, reason)

    async def _notify(
        self,
        action: str,
        payload: dict[str, Any],
        *,
        status: str = "",
        request_id: int | None = None,
    ) -> None:
        # Diagnostics, log and firmware status may be the progress of a job's station.
        record = (
            jobs.job_notification_record
            if action in jobs.JOB_PROGRESS_ACTIONS
            else network.notification_record
        )
        await db(record)(
            station_id=self.station_id,
            action=action,
            payload=payload,
            status=status,
            request_id=request_id,
        )
