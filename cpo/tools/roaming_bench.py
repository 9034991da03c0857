"""The roaming benchmark (`python manage.py roaming_bench`): the issue's OCPI figures.

1. A page of 100 locations served (GET /ocpi/2.2.1/locations?limit=100, through Django's
   test client in this process: the view, its queries and the JSON, without the network),
   with `stations` stations in the network (one site each, two EVSEs each).
2. `changes` EVSE status changes (connector_status_changed, as the OCPP edge calls it)
   pushed to 3 partners whose receivers are HTTP servers on loopback, each partner delivered
   by its own thread (one outbox worker per destination, as Celery runs them); the third is
   down (HTTP 503) for the first `down_seconds`. Reported: the median and the 95th percentile
   of the lag from the change's commit to its delivery (a collapsed message counts when the
   newer one that carries its state is delivered), and whether every partner ends with our
   final status of every EVSE (nothing lost).

On SQLite it works in a fresh file under the data directory; on PostgreSQL in the configured
database, which should be one of its own (it adds sites, stations and partners).
"""

from __future__ import annotations

import json
import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

Log = Callable[[str], None]


@dataclass
class RoamingBenchConfig:
    stations: int = 10_000
    changes: int = 10_000
    down_seconds: float = 60.0
    partners: int = 3


@dataclass
class RoamingBenchResult:
    config: RoamingBenchConfig
    database: str
    page_ms: list[float] = field(default_factory=list)
    lag_median_s: float | None = None
    lag_p95_s: float | None = None
    lag_median_up_s: float | None = None
    delivered_http: dict[str, int] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)
    changes_seconds: float = 0.0
    drain_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["config"] = dict(self.config.__dict__)
        return data


class Receiver:
    """A partner's locations receiver on loopback: keeps the last status of every EVSE."""

    def __init__(self) -> None:
        self.down = False
        self.statuses: dict[str, str] = {}
        self.calls = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if receiver.down:
                    code, answer = 503, {"status_code": 3000}
                else:
                    code, answer = 200, {"status_code": 1000}
                    receiver.calls += 1
                    body = json.loads(raw) if raw else {}
                    parts = self.path.rstrip("/").split("/")
                    if self.command == "PATCH":
                        receiver.statuses[parts[-1]] = body.get("status", "")
                    elif self.command == "PUT":
                        for evse in body.get("evses", []):
                            receiver.statuses[evse["uid"]] = evse["status"]
                out = json.dumps(answer | {"timestamp": "2026-01-01T00:00:00Z"}).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_PUT = do_PATCH = do_POST = _handle  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _prepare_database(log: Log) -> str:
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        work = Path(settings.DATA_DIR) / "roaming-bench"
        work.mkdir(parents=True, exist_ok=True)
        path = work / "bench.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        connection.close()
        connection.settings_dict["NAME"] = str(path)
        database = f"sqlite3 {path}"
    else:
        db = settings.DATABASES["default"]
        database = f"postgresql {db['NAME']}@{db.get('HOST') or 'localhost'}"
    log(f"migrating {database}")
    call_command("migrate", interactive=False, verbosity=0)
    return database


def _network(stations: int, log: Log) -> list[tuple[int, int]]:
    """`stations` sites of one station with 2 EVSEs (one connector each); returns the
    (station id, evse number) of every EVSE."""
    from decimal import Decimal

    from roaming.models import OurParty
    from stations.models import ChargingStation, Connector, Evse, Location

    OurParty.objects.create(country_code="NL", party_id="CPO", name="CPO Bench", is_default=True)
    log(f"creating {stations} sites and stations")
    batch = 1000
    evses: list[tuple[int, int]] = []
    for start in range(0, stations, batch):
        count = min(batch, stations - start)
        sites = Location.objects.bulk_create(
            [
                Location(
                    name=f"Bench site {start + i}",
                    address="Benchstraat 1",
                    city="Utrecht",
                    country="NLD",
                    latitude=Decimal("52.090000") + Decimal(i) / 100000,
                    longitude=Decimal("5.120000"),
                )
                for i in range(count)
            ]
        )
        chargers = ChargingStation.objects.bulk_create(
            [
                ChargingStation(
                    identity=f"BENCH-{start + i:06d}",
                    location=site,
                    protocol="ocpp1.6",
                    is_online=True,
                    registration_status=ChargingStation.RegistrationStatus.ACCEPTED,
                )
                for i, site in enumerate(sites)
            ]
        )
        made = Evse.objects.bulk_create(
            [
                Evse(station=charger, evse_id=n, uid=f"{charger.identity}-{n}")
                for charger in chargers
                for n in (1, 2)
            ]
        )
        Connector.objects.bulk_create(
            [
                Connector(station_id=evse.station_id, evse=evse, connector_id=1, status="Available")
                for evse in made
            ]
        )
        evses += [(evse.station_id, evse.evse_id) for evse in made]
    return evses


def _partner(name: str, receiver: Receiver, party: Any, token: str) -> Any:
    from cpo.lib.sealing import seal
    from roaming.models import IssuedToken, Partner
    from roaming.tokens import token_hash

    partner = Partner.objects.create(
        name=name,
        status=Partner.Status.REGISTERED,
        version="2.2.1",
        endpoints=[
            {
                "identifier": "locations",
                "role": "RECEIVER",
                "url": f"{receiver.url}/2.2.1/locations",
            }
        ],
        roles=[{"role": "EMSP", "country_code": "DE", "party_id": name[-3:].upper()}],
        their_token_sealed=seal("their-token"),
        registered_at=timezone.now(),
    )
    partner.allowed_parties.add(party)
    IssuedToken.objects.create(
        partner=partner,
        kind=IssuedToken.Kind.CREDENTIALS,
        token_hash=token_hash(token),
        token_sealed=seal(token),
    )
    return partner


def _page_times(token: str, rounds: int = 7) -> list[float]:
    from django.test import Client

    client = Client()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        answer = client.get(
            "/ocpi/2.2.1/locations?limit=100&offset=100",
            HTTP_AUTHORIZATION=f"Token {token}",
        )
        times.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200 or len(json.loads(answer.content)["data"]) != 100:
            raise RuntimeError(f"the locations page failed: {answer.status_code}")
    return times


def run(config: RoamingBenchConfig, *, log: Log) -> RoamingBenchResult:
    from cpo.outbox import services as outbox_services

    # The partner that comes back is retried within two seconds: the outbox's own back-off
    # (OUTBOX_RETRY_BASE_SECONDS, doubling up to an hour) would make the bench measure the
    # back-off after a long outage, not the delivery.
    settings.OUTBOX_RETRY_BASE_SECONDS = 1.0
    settings.OUTBOX_RETRY_MAX_SECONDS = 2.0
    # The bench's own threads deliver (one per partner, polling): no Celery wake-up per
    # message (no broker runs here).
    outbox_services.wake_register(lambda kind, ref: None)
    redis = None
    if settings.EMBEDDED_REDIS:
        from cpo.lib import embedded_redis

        if not embedded_redis.is_alive(settings.REDIS_SOCKET):
            # The cache the push targets are kept in (as in production).
            redis = embedded_redis.start(settings.DATA_DIR)
    try:
        return _run(config, log=log)
    finally:
        if redis is not None:
            from cpo.lib import embedded_redis

            embedded_redis.stop(redis)


def _run(config: RoamingBenchConfig, *, log: Log) -> RoamingBenchResult:
    from cpo.outbox.models import OutboxMessage
    from cpo.outbox.services import outbox_deliver_destination
    from roaming.models import OurParty
    from roaming.push import push_targets_changed
    from stations import services as stations
    from stations.models import Evse

    result = RoamingBenchResult(config=config, database=_prepare_database(log))
    evses = _network(config.stations, log)
    party = OurParty.objects.get()
    receivers = [Receiver() for _ in range(config.partners)]
    try:
        partners = [
            _partner(f"Bench eMSP {chr(65 + i)}{i:02d}", receiver, party, f"bench-token-{i}")
            for i, receiver in enumerate(receivers)
        ]
        push_targets_changed()
        log("timing the locations page")
        result.page_ms = _page_times("bench-token-0")
        log(f"locations page of 100: {sorted(result.page_ms)} ms")

        down = receivers[-1]
        down.down = True
        stop = threading.Event()

        def worker(partner_id: int) -> None:
            close_old_connections()
            try:
                while not stop.is_set():
                    run = outbox_deliver_destination(
                        kind="ocpi", ref=str(partner_id), budget_seconds=2
                    )
                    if not run.delivered:
                        time.sleep(0.05)
            finally:
                connection.close()

        threads = [threading.Thread(target=worker, args=(p.pk,)) for p in partners]
        for thread in threads:
            thread.start()
        log(f"{config.changes} status changes, the last partner down {config.down_seconds} s")
        rng = random.Random(14)
        statuses = ("Charging", "Available", "Preparing", "SuspendedEV", "Finishing", "Faulted")
        started = time.monotonic()
        for i in range(config.changes):
            station_id, evse_id = rng.choice(evses)
            with transaction.atomic():
                stations.connector_status_changed(
                    station_id=station_id,
                    evse_id=evse_id,
                    connector_id=1,
                    status=rng.choice(statuses),
                    timestamp=timezone.now(),
                )
            if down.down and time.monotonic() - started >= config.down_seconds:
                log(f"partner {partners[-1].name} back after {i + 1} changes")
                down.down = False
        result.changes_seconds = time.monotonic() - started
        while down.down and time.monotonic() - started < config.down_seconds:
            time.sleep(0.5)
        down.down = False
        log("draining")
        drain = time.monotonic()
        while OutboxMessage.objects.filter(status__in=OutboxMessage.OPEN).exists():
            time.sleep(0.5)
            if time.monotonic() - drain > 900:
                raise RuntimeError("the outbox did not drain in 15 minutes")
        result.drain_seconds = time.monotonic() - drain
        stop.set()
        for thread in threads:
            thread.join()

        lags: list[float] = []
        up_lags: list[float] = []
        for partner in partners:
            rows = OutboxMessage.objects.filter(
                destination_kind="ocpi", destination_ref=str(partner.pk)
            ).values_list("created_at", "delivered_at")
            mine = [(d - c).total_seconds() for c, d in rows if d is not None]
            lags += mine
            if partner != partners[-1]:
                up_lags += mine
        lags.sort()
        result.lag_median_s = statistics.median(lags) if lags else None
        result.lag_p95_s = lags[int(len(lags) * 0.95)] if lags else None
        result.lag_median_up_s = statistics.median(up_lags) if up_lags else None
        ours = {
            uid: status
            for uid, status in _ocpi_statuses(Evse.objects.filter(status_at__isnull=False))
        }
        for partner, receiver in zip(partners, receivers, strict=True):
            result.delivered_http[partner.name] = receiver.calls
            result.lost[partner.name] = sum(
                1 for uid, status in ours.items() if receiver.statuses.get(uid) != status
            )
    finally:
        for receiver in receivers:
            receiver.stop()
    return result


def _ocpi_statuses(evses: Any) -> list[tuple[str, str]]:
    from roaming.locations import evse_status

    out = []
    for evse in evses.select_related("station").prefetch_related("connectors"):
        out.append((evse.uid, evse_status(evse.station, list(evse.connectors.all()))))
    return out


def render(result: RoamingBenchResult) -> str:
    page = sorted(result.page_ms)
    lines = [
        f"roaming bench on {result.database}",
        f"  stations: {result.config.stations}, status changes: {result.config.changes}, "
        f"partners: {result.config.partners} (the last down {result.config.down_seconds} s)",
        f"  locations page of 100: median {statistics.median(page):.1f} ms, "
        f"max {page[-1]:.1f} ms ({len(page)} requests)",
        f"  status changes written in {result.changes_seconds:.1f} s; outbox drained "
        f"{result.drain_seconds:.1f} s after the last",
        f"  push lag: median {result.lag_median_s:.2f} s, p95 {result.lag_p95_s:.2f} s; "
        f"partners that stayed up: median {result.lag_median_up_s:.2f} s",
        f"  HTTP calls per partner: {result.delivered_http}",
        f"  EVSEs whose last status a partner lacks (lost): {result.lost}",
    ]
    return "\n".join(lines)
