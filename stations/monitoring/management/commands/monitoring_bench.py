"""`python manage.py monitoring_bench`: one detector pass over a large generated network.

Bulk-creates (default) 10,000 stations with 2 connectors each, a connection and a boot row
per station, 2,000 active sessions and 5,000 recent authorization decisions, a few percent of
them in each malfunction; times the first pass (which opens the incidents), a second one (the
steady state: everything touched, nothing new) and a third after the connector faults clear
(resolves), then deletes every row it created (identities start with MONBENCH-). It writes to
the configured DATABASE_URL: run it on a database that may carry that load for a minute.
Not a test.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand
from django.db import connection, transaction
from django.utils import timezone

PREFIX = "MONBENCH-"


class Command(BaseCommand):
    help = "Time one monitoring detector pass over a generated network (rows removed after)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--stations", type=int, default=10_000)

    def handle(self, *args: Any, **options: Any) -> None:
        from stations.models import ChargingStation, Connector
        from stations.monitoring.detectors import detectors_run

        count = options["stations"]
        try:
            started = time.monotonic()
            created = self._network(count)
            self.stdout.write(
                f"{connection.vendor}: created {created} in {time.monotonic() - started:.1f} s"
            )
            passes = (
                "first pass (opens incidents)",
                "second pass (steady state)",
                "third pass (the connectors cleared: resolves)",
            )
            for label in passes:
                if label.startswith("third"):
                    Connector.objects.filter(
                        station__identity__startswith=PREFIX,
                        status__in=["Faulted", "Preparing", "Finishing"],
                    ).update(status="Available", error_code="")
                started = time.monotonic()
                report = detectors_run()
                elapsed = time.monotonic() - started
                opened = sum(r["opened"] for r in report.values())
                present = sum(r["present"] for r in report.values())
                resolved = sum(r["resolved"] for r in report.values())
                self.stdout.write(
                    f"{label}: {elapsed:.2f} s; opened {opened}, still present {present}, "
                    f"resolved {resolved}; "
                    + ", ".join(f"{t} {r['opened'] + r['present']}" for t, r in report.items())
                )
        finally:
            self._clean()
            left = ChargingStation.objects.filter(identity__startswith=PREFIX).count()
            self.stdout.write(f"removed the {PREFIX}* rows: {left} left")

    @transaction.atomic
    def _network(self, count: int) -> str:
        from sessions.models import AuthorizationDecision, ChargingSession
        from stations.commands.models import Command as QueuedCommand
        from stations.models import (
            ChargingStation,
            Connector,
            Evse,
            StationBoot,
            StationConnection,
        )
        from stations.monitoring.models import StationProbe

        now = timezone.now()
        hour_ago = now - timedelta(hours=1)
        stations = ChargingStation.objects.bulk_create(
            ChargingStation(
                identity=f"{PREFIX}{n:05d}",
                protocol="ocpp1.6",
                is_online=n % 100 != 0,  # 1 %: gone
                last_seen_at=hour_ago if n % 100 == 0 else now,
            )
            for n in range(count)
        )
        evses = Evse.objects.bulk_create(
            Evse(station=s, evse_id=e, uid=f"{s.identity}-{e}") for s in stations for e in (1, 2)
        )

        sessions_at = min(2000, count)  # stations 0..1999 have a session on EVSE 1

        def status(k: int, evse_id: int) -> str:
            if evse_id == 1 and k < sessions_at:
                return "Available" if k % 50 == 7 else "Charging"  # 2 %: ghost sessions
            return {0: "Faulted", 1: "Preparing", 2: "Finishing"}.get(k % 50, "Available")

        connectors = Connector.objects.bulk_create(
            Connector(
                station_id=evse.station_id,
                evse=evse,
                connector_id=1,
                status=status(n // 2, evse.evse_id),
                error_code="GroundFailure" if status(n // 2, evse.evse_id) == "Faulted" else "",
                status_at=hour_ago,
            )
            for n, evse in enumerate(evses)
        )
        StationConnection.objects.bulk_create(
            StationConnection(
                station=s, protocol="ocpp1.6", connected_at=now - timedelta(minutes=n % 7)
            )
            for s in stations
            for n in range(10 if s.pk % 500 == 0 else 1)  # 0.2 % flapping
        )
        StationBoot.objects.bulk_create(
            StationBoot(station=s, booted_at=now - timedelta(minutes=n))
            for s in stations
            for n in range(8 if s.pk % 500 == 1 else 1)  # 0.2 % in a reboot loop
        )
        gone = [s for n, s in enumerate(stations) if n % 100 == 0]
        probes = QueuedCommand.objects.bulk_create(
            QueuedCommand(
                station=s,
                protocol="ocpp1.6",
                verb="trigger_message",
                action="TriggerMessage",
                status=QueuedCommand.Status.EXPIRED,
                created_at=now - timedelta(minutes=5),
                expires_at=now - timedelta(minutes=3),
            )
            for s in gone
        )
        StationProbe.objects.bulk_create(
            StationProbe(station=s, command=c, sent_at=now - timedelta(minutes=5))
            for s, c in zip(gone, probes, strict=True)
        )
        active = stations[:sessions_at]
        sessions = ChargingSession.objects.bulk_create(
            ChargingSession(
                station=s,
                evse_id=1,
                connector_id=1,
                transaction_id=str(uuid.uuid4()),
                started_at=hour_ago,
                meter_last_at=hour_ago if k % 20 == 0 else now,  # 5 %: stuck
                meter_start_wh=Decimal(0),
                energy_wh=Decimal(0) if k % 25 == 2 else Decimal(5000),  # 4 %: no energy
            )
            for k, s in enumerate(active)
        )
        ChargingSession.objects.filter(
            pk__in=[x.pk for k, x in enumerate(sessions) if k % 20 == 0]
        ).update(updated_at=hour_ago)
        AuthorizationDecision.objects.bulk_create(
            AuthorizationDecision(
                station=stations[(n % 25) * 7 if n % 4 == 0 else n % count],
                uid=f"TAG{n}",
                context=AuthorizationDecision.Context.AUTHORIZE,
                status="Invalid" if n % 4 == 0 else "Accepted",
                reason="bench",
                created_at=now,
            )
            for n in range(5000)
        )
        return (
            f"{len(stations)} stations, {len(connectors)} connectors, {len(active)} sessions, "
            "5000 authorizations"
        )

    def _clean(self) -> None:
        from sessions.models import AuthorizationDecision, ChargingSession
        from stations.models import ChargingStation

        with transaction.atomic():
            ids = ChargingStation.objects.filter(identity__startswith=PREFIX).values("pk")
            # Sessions are PROTECTed from their station's deletion.
            ChargingSession.objects.filter(station_id__in=ids).delete()
            AuthorizationDecision.objects.filter(station_id__in=ids).delete()
            ChargingStation.objects.filter(identity__startswith=PREFIX).delete()
