"""Simulated charging stations: OCPP 1.6J and 2.0.1 chargers over real websockets.

A station behaves like a real charger: it connects with HTTP Basic credentials, boots, reports
the status of its connectors, sends heartbeats at the interval the CSMS gave, runs charging
sessions (authorize, start, meter values with the configured measurands and interval, stop),
reconnects with exponential back-off and jitter when the connection drops, and queues its
transaction messages while offline to replay them, in order, once it is back.

Frames use the `ocpp` library's OCPP-J framing (`ocpp.messages`) over `websockets`; with
`validate=True` every frame both ways is checked against the official JSON schemas.

Many stations run in one asyncio loop; a `Fleet` spreads them over several processes
(multiprocessing) and binds each connection to its own source address in 127.0.0.0/8, so a
single machine opens more connections than one address's ~28k ephemeral ports allow.

Nothing here imports Django: the module runs in plain worker processes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import decimal
import hashlib
import hmac
import ipaddress
import itertools
import json
import math
import multiprocessing
import multiprocessing.connection
import random
import resource
import signal
import socket
import threading
import time
import uuid
from array import array
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import websockets
from ocpp.messages import Call, CallError, CallResult, MessageType, get_validator, unpack

V16 = "ocpp1.6"
V201 = "ocpp2.0.1"
# 2.1 stations send the 2.0.1 messages (the same in 2.1), checked against the 2.1 schemas.
V21 = "ocpp2.1"
VERSION = {V16: "1.6", V201: "2.0.1", V21: "2.1"}
ENERGY = "Energy.Active.Import.Register"
DEFAULT_MEASURANDS = (ENERGY, "Power.Active.Import", "SoC")
# Seconds before an unanswered transaction message is sent again on a live connection.
TRANSACTION_RETRY_INTERVAL = 10.0
# When the message a task sends was due on the benchmark's schedule (perf_counter seconds):
# its latency counts from then, so waiting behind the station's previous CALL is not hidden.
MESSAGE_DUE: ContextVar[float | None] = ContextVar("message_due", default=None)


def raise_open_files_limit() -> int:
    """Lift the soft open-files limit to the hard limit; returns the new soft limit.

    Every connection is a file descriptor, and the usual soft limit of 1024 ends a fleet (or
    a server) long before memory or CPU do.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def generated_password(identity: str, seed: str) -> str:
    """The password of a generated station: derived, so the simulator never stores a list."""
    digest = hmac.new(seed.encode(), identity.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:32]


def source_address(index: int) -> str:
    """A distinct loopback source address per station, 127.1.0.1 upwards (62,500 of them)."""
    return f"127.{1 + index // 62500 % 250}.{index // 250 % 250 + 1}.{index % 250 + 1}"


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


def failure_reason(error: BaseException) -> str:
    """Why a connection attempt (or a call) failed, in the words an operator needs."""
    if isinstance(error, websockets.InvalidStatus):
        code = error.response.status_code
        if code in (401, 403):
            return f"HTTP {code}: refused by the back office (unknown identity or wrong password)"
        return f"HTTP {code}"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused (is the back office running on that port?)"
    if isinstance(error, TimeoutError):
        return "timed out"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


@dataclass(frozen=True)
class StationSpec:
    identity: str
    protocol: str = V16
    password: str | None = None
    connectors: int = 2
    source_ip: str | None = None


@dataclass
class Behaviour:
    """How stations behave. None for a timer turns that behaviour off (the bench drives it)."""

    meter_interval: float | None = 60.0
    measurands: tuple[str, ...] = DEFAULT_MEASURANDS
    id_tag: str = "DEMO-TAG-OK"
    # Idle time before each session on a connector, seconds (uniform); None: no own sessions.
    session_gap: tuple[float, float] | None = (60.0, 300.0)
    session_length: tuple[float, float] = (300.0, 1200.0)
    power_w: tuple[float, float] = (7000.0, 22000.0)
    heartbeats: bool = True
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0
    open_timeout: float = 30.0
    response_timeout: float = 30.0
    validate: bool = False
    vendor: str = "CPO-Sim"
    model: str = "Fleet-1"
    # Vehicles: how many phases each uses (one is picked per session) and its maximum current
    # per phase; None: the maximum follows from the session's power (`power_w`).
    vehicle_phases: tuple[int, ...] = (3,)
    vehicle_max_a: float | None = None
    # The answer to SetChargingProfile: "Accepted", or "Rejected" for a station that refuses.
    profile_answer: str = "Accepted"
    voltage_v: float = 230.0


# --- statistics ---------------------------------------------------------------------------


@dataclass
class Stats:
    """What the stations of one process did. Latencies are seconds from when the message was
    due (the benchmark's schedule; otherwise from when the station wanted to send it, waiting
    for its previous CALL included) to its CALLRESULT."""

    sent: Counter[str] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)
    call_errors: Counter[str] = field(default_factory=Counter)
    timeouts: Counter[str] = field(default_factory=Counter)
    latencies: dict[str, array] = field(default_factory=dict)
    # Rows the CSMS acknowledged: what must be in its database.
    samples: int = 0
    sessions: int = 0
    # Each acknowledged transaction ("identity<TAB>transaction id") and meter value
    # ("identity<TAB>timestamp<TAB>samples"): the benchmark looks every one up in the database.
    acked_transactions: list[str] = field(default_factory=list)
    acked_samples: list[str] = field(default_factory=list)
    status_events: int = 0
    connects: int = 0
    handshake_failures: int = 0
    failure_reasons: Counter[str] = field(default_factory=Counter)
    disconnects: int = 0
    queued: int = 0
    replayed: int = 0
    dropped_offline: int = 0
    schema_violations: list[str] = field(default_factory=list)

    def latency(self, action: str, seconds: float) -> None:
        bucket = self.latencies.get(action)
        if bucket is None:
            bucket = self.latencies[action] = array("d")
        bucket.append(seconds)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["latencies"] = {k: v.tobytes() for k, v in self.latencies.items()}
        return data

    @classmethod
    def merged(cls, parts: Iterable[dict[str, Any]]) -> Stats:
        total = cls()
        for part in parts:
            for name in ("sent", "answered", "call_errors", "timeouts", "failure_reasons"):
                getattr(total, name).update(part[name])
            for name in (
                "samples",
                "sessions",
                "status_events",
                "connects",
                "handshake_failures",
                "disconnects",
                "queued",
                "replayed",
                "dropped_offline",
            ):
                setattr(total, name, getattr(total, name) + part[name])
            total.schema_violations += part["schema_violations"][:20]
            total.acked_transactions += part["acked_transactions"]
            total.acked_samples += part["acked_samples"]
            for action, raw in part["latencies"].items():
                values = array("d")
                values.frombytes(raw)
                total.latencies.setdefault(action, array("d")).extend(values)
        return total

    def all_latencies(self) -> list[float]:
        return sorted(itertools.chain.from_iterable(self.latencies.values()))


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


# --- one station ---------------------------------------------------------------------------


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class Offline(Exception):
    """The station has no connection; the message was queued or dropped."""


@dataclass
class Session:
    transaction_id: int | str | None
    meter_start: int
    seq_no: int = 0
    remote_start_id: int | None = None


@dataclass(frozen=True)
class Profile:
    """A charging profile the station holds, in amperes or watts, on wall-clock time."""

    id: int
    purpose: str  # the 1.6 names: TxProfile, TxDefaultProfile, ChargePointMaxProfile
    stack_level: int
    start: float  # epoch seconds the schedule starts at
    periods: tuple[tuple[float, float, int | None], ...]  # (start offset s, limit, phases)
    unit: str = "A"
    duration: float | None = None

    def limit_at(self, now: float, voltage: float, phases: int) -> tuple[float, int | None] | None:
        """The limit per phase in amperes at `now` (and the phases it allows), or None when
        the schedule does not apply then."""
        elapsed = now - self.start
        if elapsed < 0 or (self.duration is not None and elapsed >= self.duration):
            return None
        current = None
        for offset, limit, allowed in self.periods:
            if offset <= elapsed:
                current = (limit, allowed)
        if current is None:
            return None
        limit, allowed = current
        if self.unit == "W":
            limit = limit / (voltage * (allowed or phases))
        return limit, allowed


def profile_from(payload: dict[str, Any], protocol: str) -> Profile:
    """A SetChargingProfile's profile (1.6 csChargingProfiles or 2.0.1 chargingProfile)."""
    if protocol == V16:
        profile = payload["csChargingProfiles"]
        schedule = profile["chargingSchedule"]
        profile_id = profile["chargingProfileId"]
    else:
        profile = payload["chargingProfile"]
        schedule = profile["chargingSchedule"][0]
        profile_id = profile["id"]
    purpose = profile["chargingProfilePurpose"]
    purpose = {"ChargingStationMaxProfile": "ChargePointMaxProfile"}.get(purpose, purpose)
    start = time.time()
    if schedule.get("startSchedule"):
        start = datetime.fromisoformat(schedule["startSchedule"].replace("Z", "+00:00")).timestamp()
    periods = tuple(
        (float(p["startPeriod"]), float(p["limit"]), p.get("numberPhases"))
        for p in schedule["chargingSchedulePeriod"]
    )
    return Profile(
        id=int(profile_id),
        purpose=purpose,
        stack_level=int(profile["stackLevel"]),
        start=start,
        periods=periods,
        unit=schedule["chargingRateUnit"],
        duration=float(schedule["duration"]) if schedule.get("duration") is not None else None,
    )


# A vehicle cannot charge below this current per phase (IEC 61851): under it, it pauses.
VEHICLE_MIN_A = 6.0


@dataclass
class Connector:
    number: int
    status: str = "Available"
    energy_wh: float = 0.0
    power_w: float = 0.0
    soc: float = 20.0
    session: Session | None = None
    metered_at: float = field(default_factory=time.monotonic)
    # The vehicle plugged in: phases it uses and its maximum current per phase.
    vehicle_phases: int = 3
    vehicle_max_a: float = 32.0
    voltage_v: float = 230.0
    profiles: dict[int, Profile] = field(default_factory=dict)
    # The station-wide profiles (connector 0 / EVSE 0), shared by every connector.
    station_profiles: dict[int, Profile] = field(default_factory=dict)

    def limit_a(self, now: float | None = None) -> tuple[float | None, int | None]:
        """The limit per phase the profiles set now (None: no profile limits it), 1.6 rules:
        the TxProfile of the highest stack level that applies, else the TxDefaultProfile
        (the connector's own before the station's), capped by the ChargePointMaxProfile."""
        now = time.time() if now is None else now
        limit: tuple[float, int | None] | None = None
        for purpose, pools in (
            ("TxProfile", (self.profiles,)),
            ("TxDefaultProfile", (self.profiles, self.station_profiles)),
        ):
            if self.session is None and purpose == "TxProfile":
                continue
            for pool in pools:
                ranked = sorted(
                    (p for p in pool.values() if p.purpose == purpose),
                    key=lambda p: -p.stack_level,
                )
                for profile in ranked:
                    limit = profile.limit_at(now, self.voltage_v, self.vehicle_phases)
                    if limit is not None:
                        break
                if limit is not None:
                    break
            if limit is not None:
                break
        amps, phases = limit if limit is not None else (None, None)
        for profile in self.station_profiles.values():
            if profile.purpose == "ChargePointMaxProfile":
                cap = profile.limit_at(now, self.voltage_v, self.vehicle_phases)
                if cap is not None:
                    amps = cap[0] if amps is None else min(amps, cap[0])
        return amps, phases

    def drawn(self, now: float | None = None) -> tuple[float, int]:
        """What the vehicle draws now: min(profile, vehicle maximum) per phase, on its phases
        (0 A when the limit is under the vehicle's minimum)."""
        if self.session is None:
            return 0.0, self.vehicle_phases
        amps, allowed = self.limit_a(now)
        phases = min(self.vehicle_phases, allowed or 3)
        current = self.vehicle_max_a if amps is None else min(amps, self.vehicle_max_a)
        if current < VEHICLE_MIN_A:
            current = 0.0
        return current, phases

    def phase_currents(self, now: float | None = None) -> tuple[float, float, float]:
        """Current on the connector's L1, L2, L3 (a single-phase vehicle draws on L1)."""
        current, phases = self.drawn(now)
        return tuple(current if i < phases else 0.0 for i in range(3))  # type: ignore[return-value]

    def advance(self) -> None:
        now = time.monotonic()
        if self.session is not None:
            current, phases = self.drawn()
            self.power_w = current * self.voltage_v * phases
            hours = (now - self.metered_at) / 3600
            self.energy_wh += self.power_w * hours
            self.soc = min(100.0, self.soc + self.power_w * hours / 600)
        self.metered_at = now


@dataclass
class Queued:
    action: str
    build: Callable[[], dict[str, Any]]
    done: Callable[[dict[str, Any]], None] | None
    offline: bool = False


class SimulatedStation:
    """One charger. `run()` keeps it connected until `stop()`; the session methods may be
    called from outside (the bench's traffic driver, tests) or by its own timers."""

    def __init__(
        self, spec: StationSpec, url: str, behaviour: Behaviour, stats: Stats, *, bind: bool = True
    ):
        self.spec = spec
        self.url = url.rstrip("/")
        self.behaviour = behaviour
        self.stats = stats
        self.bind = bind and spec.source_ip is not None
        self.protocol = spec.protocol
        self.connectors = [
            Connector(n + 1, energy_wh=random.uniform(1e5, 1e7)) for n in range(spec.connectors)
        ]
        self.ws: Any = None
        self.online = asyncio.Event()
        self.booted = asyncio.Event()
        self.stopped = False
        self.registration = ""
        self.heartbeat_interval = 300.0
        self.pending: dict[str, tuple[str, asyncio.Future[Any]]] = {}
        self.call_lock = asyncio.Lock()
        self.outbox: deque[Queued] = deque()
        self.replaying = False
        self.boot_latency: float | None = None
        self.accepted_at: float | None = None  # wall clock, for the boot storm
        self.ready_at: float | None = None  # booted and every status answered
        self.offline_until = 0.0
        self._ids = itertools.count(1)
        self._last_ms = 0
        self._tasks: list[asyncio.Task[Any]] = []
        self._background: set[asyncio.Future[Any]] = set()
        self._retry_scheduled = False
        # Where the station says what it is doing, one line each (the simulate command prints
        # them); None for the benchmark's thousands of stations, which only count.
        self.note: Callable[[str], None] | None = None
        # Every CSMS call answered, with its times, when a test asks for it (a list).
        self.calls_log: list[tuple[float, float, str, dict[str, Any]]] | None = None

    def say(self, text: str) -> None:
        if self.note is not None:
            self.note(f"{self.spec.identity}: {text}")

    # --- connection ---------------------------------------------------------------------

    async def run(self) -> None:
        """Stay connected: connect, boot once, report statuses, replay, then serve frames."""
        attempt = 0
        while not self.stopped:
            wait = self.offline_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                self.ws = await self._connect()
            except (OSError, TimeoutError, websockets.InvalidHandshake) as error:
                self.stats.handshake_failures += 1
                self.stats.failure_reasons[type(error).__name__] += 1
                attempt += 1
                # Exponential back-off with jitter: a fleet that lost its CSMS must not come
                # back as one synchronized wave.
                delay = min(
                    self.behaviour.reconnect_max,
                    self.behaviour.reconnect_min * 2 ** min(attempt - 1, 10),
                )
                delay = random.uniform(delay / 2, delay)
                if self.note is not None:
                    self.say(
                        f"failed to connect to {self.url}/{self.spec.identity}: "
                        f"{failure_reason(error)}; retrying in {delay:.0f} s"
                    )
                await asyncio.sleep(delay)
                continue
            attempt = 0
            self.stats.connects += 1
            self.protocol = self.ws.subprotocol or self.protocol
            reader = asyncio.create_task(self._read(self.ws))
            self.online.set()
            try:
                await self._on_connected()
                await reader
            except (websockets.ConnectionClosed, Offline, TimeoutError, CallRejected):
                pass
            finally:
                self.online.clear()
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
                self._fail_pending()
                if not self.stopped:
                    # Never two connections at once: a boot that timed out leaves a live one.
                    self.ws.transport.abort()
                    self.stats.disconnects += 1
                    self.say("connection lost; connecting again")
            if not self.stopped:
                await asyncio.sleep(random.uniform(0.5, 1.0) * self.behaviour.reconnect_min)

    async def _connect(self) -> Any:
        headers = {}
        if self.spec.password is not None:
            token = base64.b64encode(f"{self.spec.identity}:{self.spec.password}".encode())
            headers["Authorization"] = f"Basic {token.decode()}"
        extra: dict[str, Any] = {}
        if self.bind:
            extra["local_addr"] = (self.spec.source_ip, 0)
        return await websockets.connect(
            f"{self.url}/{self.spec.identity}",
            subprotocols=[websockets.Subprotocol(self.protocol)],
            additional_headers=headers,
            open_timeout=self.behaviour.open_timeout,
            # The CSMS pings; a second keep-alive from 10,000 clients is only load.
            ping_interval=None,
            compression=None,
            max_size=2**20,
            **extra,
        )

    async def _on_connected(self) -> None:
        if self.registration != "Accepted":
            await self.boot()
        for connector in self._status_targets():
            await self.send_status(connector)
        self.ready_at = time.time()
        self.booted.set()
        await self._replay()

    def _status_targets(self) -> list[Connector | None]:
        # 1.6 reports connector 0 (the charge point itself) too.
        return ([None] if self.protocol == V16 else []) + list(self.connectors)

    async def boot(self) -> None:
        while True:
            if self.protocol == V16:
                payload: dict[str, Any] = {
                    "chargePointVendor": self.behaviour.vendor,
                    "chargePointModel": self.behaviour.model,
                    "chargePointSerialNumber": self.spec.identity[-25:],
                    "firmwareVersion": "1.0.0",
                }
            else:
                payload = {
                    "reason": "PowerUp",
                    "chargingStation": {
                        "vendorName": self.behaviour.vendor,
                        "model": self.behaviour.model,
                        "serialNumber": self.spec.identity[-25:],
                        "firmwareVersion": "1.0.0",
                    },
                }
            started = time.perf_counter()
            result = await self.call("BootNotification", payload)
            self.boot_latency = time.perf_counter() - started
            self.registration = result.get("status", "")
            self.heartbeat_interval = float(result.get("interval") or 300)
            if self.registration == "Accepted":
                self.accepted_at = time.time()
                self.say(f"connected ({self.protocol}), boot accepted")
                return
            # Pending or Rejected: ask again after the interval the CSMS gave.
            wait = max(1.0, self.heartbeat_interval)
            self.say(f"boot {self.registration}: asking again in {wait:.0f} s")
            await asyncio.sleep(wait)

    async def stop(self) -> None:
        self.stopped = True
        for task in self._tasks:
            task.cancel()
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)

    async def outage(self, seconds: float) -> None:
        """Lose the connection abruptly (no close frame) and stay offline for `seconds`."""
        self.offline_until = time.monotonic() + seconds
        if self.ws is not None:
            self.ws.transport.abort()

    def _fail_pending(self) -> None:
        for _, future in self.pending.values():
            if not future.done():
                future.set_exception(Offline())
                # The caller may have given up already (timed out); the outcome is then
                # nobody's to read, and asyncio must not report it as lost.
                future.add_done_callback(_retrieve)
        self.pending.clear()

    # --- frames -------------------------------------------------------------------------

    async def _read(self, ws: Any) -> None:
        try:
            async for raw in ws:
                try:
                    message = unpack(raw)
                except Exception:  # noqa: BLE001 - a broken frame from the CSMS is only noted
                    self.stats.schema_violations.append(f"{self.spec.identity}: unreadable")
                    continue
                if message.message_type_id == MessageType.Call:
                    self._spawn(self._answer(message))
                    continue
                entry = self.pending.pop(message.unique_id, None)
                if entry is not None and not entry[1].done():
                    entry[1].set_result(message)
        finally:
            # Calls in flight fail now, not at their timeout.
            self.online.clear()
            self._fail_pending()

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def call(
        self, action: str, payload: dict[str, Any] | Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        """Send one CALL and return the CALLRESULT payload; one outstanding CALL at a time.

        A callable payload is built once this CALL's turn has come, so that it sees what the
        answers to earlier CALLs changed (a 1.6 stop needs its start's transactionId).
        Raises Offline without a connection, TimeoutError when unanswered in time, and
        CallRejected for a CALLERROR.
        """
        if not self.online.is_set():
            raise Offline()
        # Only the first CALL of a scheduled message counts from the schedule.
        due = MESSAGE_DUE.get()
        if due is not None:
            MESSAGE_DUE.set(None)
        wanted = time.perf_counter()
        async with self.call_lock:
            if not self.online.is_set():
                raise Offline()
            if callable(payload):
                payload = payload()
            message_id = str(next(self._ids))
            call = Call(message_id, action, payload)
            if self.behaviour.validate:
                self._check(MessageType.Call, action, payload, "sent")
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self.pending[message_id] = (action, future)
            self.stats.sent[action] += 1
            try:
                await self.ws.send(call.to_json())
                reply = await asyncio.wait_for(future, self.behaviour.response_timeout)
            except websockets.ConnectionClosed:
                raise Offline() from None
            except TimeoutError:
                self.stats.timeouts[action] += 1
                raise
            finally:
                self.pending.pop(message_id, None)
            self.stats.latency(action, time.perf_counter() - (due or wanted))
        if isinstance(reply, CallError):
            self.stats.call_errors[action] += 1
            raise CallRejected(action, reply.error_code, reply.error_description)
        self.stats.answered[action] += 1
        if self.behaviour.validate:
            self._check(MessageType.CallResult, action, reply.payload, "received")
        return reply.payload

    def _check(self, message_type: int, action: str, payload: Any, direction: str) -> None:
        validator = get_validator(message_type, action, VERSION[self.protocol])
        try:
            errors = list(validator.iter_errors(payload))
        except TypeError:
            # The ocpp library caches one validator per schema, whoever asked first: one built
            # with decimals (as the server side parses) cannot compare a float's multipleOf
            # (charging profile limits such as 10.7); the payload is compared as decimals.
            exact = json.loads(json.dumps(payload), parse_float=decimal.Decimal)
            errors = list(validator.iter_errors(exact))
        for error in errors:
            self.stats.schema_violations.append(
                f"{self.spec.identity} {direction} {action}: {error.message}"
            )

    async def transaction_call(
        self,
        action: str,
        build: Callable[[], dict[str, Any]],
        done: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """Send a transaction message, or queue it while offline or while older ones wait.

        The payload is built at send time: a 1.6 StopTransaction queued offline learns the
        transactionId that its queued StartTransaction gets on replay.
        """
        item = Queued(action, build, done)
        if not self.online.is_set() or self.outbox or self.replaying:
            item.offline = not self.online.is_set()
            self.outbox.append(item)
            self.stats.queued += 1
            return
        try:
            await self._deliver(item)
        except (Offline, TimeoutError):
            self.outbox.appendleft(item)
            self.stats.queued += 1
            if self.online.is_set():
                self._schedule_retry()

    def _schedule_retry(self) -> None:
        if self._retry_scheduled:
            return
        self._retry_scheduled = True

        async def retry() -> None:
            await asyncio.sleep(TRANSACTION_RETRY_INTERVAL)
            self._retry_scheduled = False
            if self.online.is_set() and not self.replaying:
                await self._replay()

        self._spawn(retry())

    async def _deliver(self, item: Queued) -> None:
        def build() -> dict[str, Any]:
            payload = item.build()
            if item.offline and item.action == "TransactionEvent":
                payload["offline"] = True
            return payload

        result = await self.call(item.action, build)
        if item.done is not None:
            item.done(result)

    async def _replay(self) -> None:
        self.replaying = True
        try:
            while self.outbox and self.online.is_set():
                item = self.outbox[0]
                try:
                    await self._deliver(item)
                except CallRejected:
                    pass  # answered with an error: a charger does not resend those
                except TimeoutError:
                    self._schedule_retry()
                    return
                except Offline:
                    return  # the item stays first in line; the next connection replays it
                self.outbox.popleft()
                self.stats.replayed += 1
        finally:
            self.replaying = False

    async def _answer(self, call: Any) -> None:
        """Answer a CALL from the CSMS the way a simple, cooperative charger does."""
        received = time.monotonic()
        handler = _CSMS_CALLS.get(self.protocol, {}).get(call.action)
        if self.behaviour.validate:
            self._check(MessageType.Call, call.action, call.payload, "received")
        if handler is None:
            reply = CallError(
                call.unique_id, "NotImplemented", f"{call.action} not simulated", {}
            ).to_json()
            follow_up = None
        else:
            payload, follow_up = handler(self, call.payload)
            reply = CallResult(call.unique_id, payload).to_json()
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.ws.send(reply)
        if self.calls_log is not None:
            # (received, answered, action, request): the order on the wire, for tests.
            self.calls_log.append((received, time.monotonic(), call.action, call.payload))
        if follow_up is not None:
            with contextlib.suppress(Offline, TimeoutError, CallRejected):
                await follow_up

    # --- what a charger sends -------------------------------------------------------------

    def timestamp(self) -> str:
        # Strictly increasing per station, in milliseconds: meter samples are unique by time.
        ms = max(int(time.time() * 1000), self._last_ms + 1)
        self._last_ms = ms
        return (
            datetime.fromtimestamp(ms / 1000, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )

    async def heartbeat(self) -> None:
        await self.call("Heartbeat", {})

    async def send_status(self, connector: Connector | None, status: str | None = None) -> None:
        if connector is not None and status is not None:
            connector.status = status
        status = connector.status if connector is not None else "Available"
        if self.protocol == V16:
            payload = {
                "connectorId": connector.number if connector else 0,
                "status": status,
                "errorCode": "NoError",
                "timestamp": self.timestamp(),
            }
        else:
            payload = {
                "timestamp": self.timestamp(),
                "connectorStatus": _STATUS_201[status],
                "evseId": connector.number if connector else 0,
                "connectorId": 1,
            }
        await self.call("StatusNotification", payload)
        self.stats.status_events += 1

    def free_connector(self) -> Connector | None:
        free = [c for c in self.connectors if c.session is None]
        return random.choice(free) if free else None

    def active_connectors(self) -> list[Connector]:
        return [c for c in self.connectors if c.session is not None]

    async def authorize(self, id_tag: str) -> str:
        if self.protocol == V16:
            result = await self.call("Authorize", {"idTag": id_tag})
            return result["idTagInfo"]["status"]
        result = await self.call("Authorize", {"idToken": {"idToken": id_tag, "type": "ISO14443"}})
        return result["idTokenInfo"]["status"]

    async def start_session(
        self,
        connector: Connector,
        *,
        id_tag: str | None = None,
        authorize: bool = True,
        remote_start_id: int | None = None,
        with_status: bool = False,
    ) -> bool:
        """Authorize (online), then start a transaction; False when the tag is refused."""
        id_tag = id_tag or self.behaviour.id_tag
        if connector.session is not None:
            return False
        if authorize and self.online.is_set():
            try:
                status = await self.authorize(id_tag)
                if status != "Accepted":
                    if self.note is not None:
                        self.say(
                            f"connector {connector.number}: {id_tag} not authorized ({status})"
                        )
                    return False
            except Offline:
                pass  # offline: local authorization, as a charger with a cache would
        connector.advance()
        behaviour = self.behaviour
        connector.vehicle_phases = random.choice(behaviour.vehicle_phases)
        connector.voltage_v = behaviour.voltage_v
        connector.vehicle_max_a = behaviour.vehicle_max_a or random.uniform(*behaviour.power_w) / (
            behaviour.voltage_v * connector.vehicle_phases
        )
        connector.power_w = connector.vehicle_max_a * behaviour.voltage_v * connector.vehicle_phases
        meter_start = int(connector.energy_wh)
        session = Session(
            transaction_id=None if self.protocol == V16 else str(uuid.uuid4()),
            meter_start=meter_start,
            remote_start_id=remote_start_id,
        )
        connector.session = session
        if with_status:
            with contextlib.suppress(Offline, TimeoutError, CallRejected):
                await self.send_status(connector, "Charging")
        else:
            connector.status = "Charging"
        timestamp = self.timestamp()
        if self.protocol == V16:

            def build() -> dict[str, Any]:
                return {
                    "connectorId": connector.number,
                    "idTag": id_tag,
                    "meterStart": meter_start,
                    "timestamp": timestamp,
                }

            def done(result: dict[str, Any]) -> None:
                session.transaction_id = result["transactionId"]
                self.stats.sessions += 1
                self.stats.acked_transactions.append(
                    f"{self.spec.identity}\t{result['transactionId']}"
                )

            await self.transaction_call("StartTransaction", build, done)
        else:
            session.seq_no = 0
            payload = self._event(
                "Started",
                connector,
                session,
                timestamp,
                "RemoteStart" if remote_start_id is not None else "Authorized",
                samples=[(ENERGY, float(meter_start), "Wh", "Transaction.Begin", "")],
                id_tag=id_tag,
            )

            def count(result: dict[str, Any]) -> None:
                self.stats.sessions += 1
                self.stats.samples += 1
                self.stats.acked_transactions.append(
                    f"{self.spec.identity}\t{session.transaction_id}"
                )
                self.stats.acked_samples.append(f"{self.spec.identity}\t{timestamp}\t1")

            await self.transaction_call("TransactionEvent", lambda: payload, count)
        return True

    def _samples(self, connector: Connector) -> list[tuple[str, float, str, str, str, str]]:
        connector.advance()
        rows = []
        for measurand in self.behaviour.measurands:
            if measurand == "Current.Import":
                # Per phase, as a charger with a three-phase meter reports it.
                for phase, amps in zip(("L1", "L2", "L3"), connector.phase_currents(), strict=True):
                    rows.append(
                        (measurand, round(amps, 1), "A", "Sample.Periodic", "Outlet", phase)
                    )
                continue
            value, unit, location = _MEASURANDS.get(measurand, (lambda c: 0.0, "", ""))
            rows.append(
                (measurand, round(value(connector), 1), unit, "Sample.Periodic", location, "")
            )
        return rows

    async def send_meter_values(self, connector: Connector) -> None:
        session = connector.session
        if session is None:
            return
        timestamp = self.timestamp()
        samples = self._samples(connector)

        def count(result: dict[str, Any]) -> None:
            self.stats.samples += len(samples)
            self.stats.acked_samples.append(f"{self.spec.identity}\t{timestamp}\t{len(samples)}")

        if self.protocol == V16:

            def build() -> dict[str, Any]:
                payload: dict[str, Any] = {
                    "connectorId": connector.number,
                    "meterValue": [
                        {
                            "timestamp": timestamp,
                            "sampledValue": [_sampled_16(*sample) for sample in samples],
                        }
                    ],
                }
                if session.transaction_id is not None:
                    payload["transactionId"] = session.transaction_id
                return payload

            await self.transaction_call("MeterValues", build, count)
        else:
            session.seq_no += 1
            payload = self._event(
                "Updated", connector, session, timestamp, "MeterValuePeriodic", samples=samples
            )
            await self.transaction_call("TransactionEvent", lambda: payload, count)

    async def stop_session(
        self, connector: Connector, *, reason: str = "Local", with_status: bool = False
    ) -> None:
        session = connector.session
        if session is None:
            return
        connector.advance()
        connector.session = None
        connector.power_w = 0.0
        connector.profiles = {
            k: p for k, p in connector.profiles.items() if p.purpose != "TxProfile"
        }
        meter_stop = max(session.meter_start, int(connector.energy_wh))
        if self.note is not None:
            kwh = (meter_stop - session.meter_start) / 1000
            self.say(f"connector {connector.number}: session ended ({reason}), {kwh:.2f} kWh")
        timestamp = self.timestamp()
        if self.protocol == V16:

            def build() -> dict[str, Any]:
                return {
                    "transactionId": session.transaction_id or 0,
                    "meterStop": meter_stop,
                    "timestamp": timestamp,
                    "reason": reason,
                    "idTag": self.behaviour.id_tag,
                }

            await self.transaction_call("StopTransaction", build)
        else:
            session.seq_no += 1
            payload = self._event(
                "Ended",
                connector,
                session,
                timestamp,
                "RemoteStop" if reason == "Remote" else "StopAuthorized",
                samples=[(ENERGY, float(meter_stop), "Wh", "Transaction.End", "")],
                stopped_reason=reason,
            )

            def count(result: dict[str, Any]) -> None:
                self.stats.samples += 1
                self.stats.acked_samples.append(f"{self.spec.identity}\t{timestamp}\t1")

            await self.transaction_call("TransactionEvent", lambda: payload, count)
        if with_status:
            with contextlib.suppress(Offline, TimeoutError, CallRejected):
                await self.send_status(connector, "Available")
        else:
            connector.status = "Available"

    def _event(
        self,
        event_type: str,
        connector: Connector,
        session: Session,
        timestamp: str,
        trigger: str,
        *,
        samples: list[tuple[Any, ...]],
        id_tag: str | None = None,
        stopped_reason: str = "",
    ) -> dict[str, Any]:
        info: dict[str, Any] = {"transactionId": session.transaction_id}
        if event_type != "Ended":
            info["chargingState"] = "Charging"
        if stopped_reason:
            info["stoppedReason"] = stopped_reason
        if session.remote_start_id is not None:
            info["remoteStartId"] = session.remote_start_id
        payload: dict[str, Any] = {
            "eventType": event_type,
            "timestamp": timestamp,
            "triggerReason": trigger,
            "seqNo": session.seq_no,
            "transactionInfo": info,
            "evse": {"id": connector.number, "connectorId": 1},
            "meterValue": [
                {"timestamp": timestamp, "sampledValue": [_sampled_201(*s) for s in samples]}
            ],
        }
        if id_tag is not None:
            payload["idToken"] = {"idToken": id_tag, "type": "ISO14443"}
        return payload

    # --- a charger's own life ----------------------------------------------------------------

    def start_life(self) -> None:
        """Start the timers of a real charger: heartbeats and sessions with meter values."""
        if self.behaviour.heartbeats:
            self._tasks.append(asyncio.create_task(self._heartbeats()))
        if self.behaviour.session_gap is not None:
            for connector in self.connectors:
                self._tasks.append(asyncio.create_task(self._sessions(connector)))

    async def _heartbeats(self) -> None:
        await self.booted.wait()
        while not self.stopped:
            await asyncio.sleep(self.heartbeat_interval * random.uniform(0.95, 1.0))
            with contextlib.suppress(Offline, TimeoutError, CallRejected):
                await self.heartbeat()

    async def _sessions(self, connector: Connector) -> None:
        gap = self.behaviour.session_gap
        assert gap is not None
        await self.booted.wait()
        where = f"connector {connector.number}"
        while not self.stopped:
            wait = random.uniform(*gap)
            if connector.session is None:
                self.say(f"{where}: waiting {wait:.0f} s before the next session")
            await asyncio.sleep(wait)
            if connector.session is None:
                try:
                    started = await self.start_session(connector, with_status=True)
                except (Offline, TimeoutError, CallRejected) as error:
                    self.say(f"{where}: no session ({failure_reason(error)})")
                    started = False
                if not started:
                    continue
            length = random.uniform(*self.behaviour.session_length)
            self.say(f"{where}: charging for {length:.0f} s")
            await self.charge(connector, length)
            with contextlib.suppress(Offline, TimeoutError, CallRejected):
                await self.stop_session(connector, with_status=True)

    async def charge(self, connector: Connector, seconds: float) -> None:
        """Keep charging for `seconds`, sending meter values at the configured interval."""
        interval = self.behaviour.meter_interval
        deadline = time.monotonic() + seconds
        while connector.session is not None and time.monotonic() < deadline:
            await asyncio.sleep(min(interval or seconds, max(0.0, deadline - time.monotonic())))
            if interval and connector.session is not None:
                with contextlib.suppress(Offline, TimeoutError, CallRejected):
                    await self.send_meter_values(connector)


class CallRejected(Exception):
    def __init__(self, action: str, code: str, description: str):
        super().__init__(f"{action}: {code} {description}")
        self.code = code


_STATUS_201 = {
    "Available": "Available",
    "Preparing": "Occupied",
    "Charging": "Occupied",
    "SuspendedEV": "Occupied",
    "SuspendedEVSE": "Occupied",
    "Finishing": "Occupied",
    "Reserved": "Reserved",
    "Unavailable": "Unavailable",
    "Faulted": "Faulted",
}

# measurand -> (value from the connector, unit, location)
_MEASURANDS: dict[str, tuple[Callable[[Connector], float], str, str]] = {
    ENERGY: (lambda c: c.energy_wh, "Wh", "Outlet"),
    "Power.Active.Import": (lambda c: c.power_w, "W", "Outlet"),
    "Current.Import": (lambda c: c.power_w / 400 / 1.732, "A", "Outlet"),
    "Current.Offered": (lambda c: 32.0, "A", "Outlet"),
    "Voltage": (lambda c: 230.0 + random.uniform(-3, 3), "V", "Outlet"),
    "SoC": (lambda c: c.soc, "Percent", "EV"),
    "Temperature": (lambda c: 25.0 + random.uniform(-1, 1), "Celsius", "Body"),
    "Frequency": (lambda c: 50.0, "", "Outlet"),
}


def _sampled_16(
    measurand: str, value: float, unit: str, context: str, location: str, phase: str = ""
) -> dict[str, Any]:
    sampled = {
        "value": f"{value:g}" if measurand != ENERGY else str(int(value)),
        "measurand": measurand,
        "context": context,
    }
    if phase:
        sampled["phase"] = phase
    if unit:
        sampled["unit"] = unit
    if location:
        sampled["location"] = location
    return sampled


def _sampled_201(
    measurand: str, value: float, unit: str, context: str, location: str, phase: str = ""
) -> dict[str, Any]:
    sampled: dict[str, Any] = {"value": value, "measurand": measurand, "context": context}
    if phase:
        sampled["phase"] = phase
    if unit:
        sampled["unitOfMeasure"] = {"unit": unit}
    if location:
        sampled["location"] = location
    return sampled


# --- answers to CSMS-initiated calls -----------------------------------------------------------

Answer = tuple[dict[str, Any], Awaitable[Any] | None]


def _remote_start_16(station: SimulatedStation, p: dict[str, Any]) -> Answer:
    connector = next((c for c in station.connectors if c.number == p.get("connectorId")), None)
    connector = connector or station.free_connector()
    if connector is None or connector.session is not None:
        station.say("remote start rejected: no free connector")
        return {"status": "Rejected"}, None
    station.say(f"connector {connector.number}: remote start for {p['idTag']}")
    return {"status": "Accepted"}, station.start_session(
        connector, id_tag=p["idTag"], with_status=True
    )


def _remote_start_201(station: SimulatedStation, p: dict[str, Any]) -> Answer:
    connector = next((c for c in station.connectors if c.number == p.get("evseId")), None)
    connector = connector or station.free_connector()
    if connector is None or connector.session is not None:
        station.say("remote start rejected: no free connector")
        return {"status": "Rejected"}, None
    station.say(f"connector {connector.number}: remote start for {p['idToken']['idToken']}")
    return {"status": "Accepted"}, station.start_session(
        connector,
        id_tag=p["idToken"]["idToken"],
        remote_start_id=p.get("remoteStartId"),
        with_status=True,
    )


def _remote_stop(station: SimulatedStation, p: dict[str, Any]) -> Answer:
    wanted = p.get("transactionId")
    for connector in station.active_connectors():
        if connector.session is not None and str(connector.session.transaction_id) == str(wanted):
            return {"status": "Accepted"}, station.stop_session(
                connector, reason="Remote", with_status=True
            )
    station.say(f"remote stop rejected: no transaction {wanted}")
    return {"status": "Rejected"}, None


def _trigger(station: SimulatedStation, p: dict[str, Any]) -> Answer:
    requested = p["requestedMessage"]
    follow: Awaitable[Any] | None = None
    if requested == "BootNotification":
        station.registration = ""
        follow = station.boot()
    elif requested == "Heartbeat":
        follow = station.heartbeat()
    elif requested == "StatusNotification":
        follow = _all_statuses(station)
    elif requested == "MeterValues":
        follow = _all_meter_values(station)
    else:
        return {"status": "NotImplemented"}, None
    return {"status": "Accepted"}, follow


async def _all_statuses(station: SimulatedStation) -> None:
    for connector in station._status_targets():
        await station.send_status(connector)


async def _all_meter_values(station: SimulatedStation) -> None:
    for connector in station.active_connectors():
        await station.send_meter_values(connector)


def _set_variables(station: SimulatedStation, p: dict[str, Any]) -> Answer:
    results = [
        {
            "attributeStatus": "Accepted",
            "component": item["component"],
            "variable": item["variable"],
        }
        for item in p["setVariableData"]
    ]
    return {"setVariableResult": results}, None


def _get_variables(station: SimulatedStation, p: dict[str, Any]) -> Answer:
    results = [
        {
            "attributeStatus": "UnknownVariable",
            "component": item["component"],
            "variable": item["variable"],
        }
        for item in p["getVariableData"]
    ]
    return {"getVariableResult": results}, None


def _change_configuration(station: SimulatedStation, p: dict[str, Any]) -> Answer:
    if p["key"] == "HeartbeatInterval":
        with contextlib.suppress(ValueError):
            station.heartbeat_interval = float(p["value"])
    elif p["key"] == "MeterValueSampleInterval":
        with contextlib.suppress(ValueError):
            station.behaviour.meter_interval = float(p["value"]) or None
    return {"status": "Accepted"}, None


def _get_configuration(station: SimulatedStation, p: dict[str, Any]) -> Answer:
    keys = {
        "HeartbeatInterval": str(int(station.heartbeat_interval)),
        "MeterValueSampleInterval": str(int(station.behaviour.meter_interval or 0)),
        "MeterValuesSampledData": ",".join(station.behaviour.measurands),
        "NumberOfConnectors": str(len(station.connectors)),
    }
    wanted = p.get("key") or list(keys)
    known = [
        {"key": k, "readonly": k == "NumberOfConnectors", "value": keys[k]}
        for k in wanted
        if k in keys
    ]
    unknown = [k for k in wanted if k not in keys]
    answer: dict[str, Any] = {"configurationKey": known}
    if unknown:
        answer["unknownKey"] = unknown
    return answer, None


def _set_profile(station: SimulatedStation, p: dict[str, Any]) -> Answer:
    """Hold a charging profile and obey it from now on (or refuse it, if told to)."""
    if station.behaviour.profile_answer != "Accepted":
        return {"status": station.behaviour.profile_answer}, None
    number = p.get("connectorId", p.get("evseId", 0))
    profile = profile_from(p, station.protocol)
    if number == 0:
        for each in station.connectors:
            each.advance()  # energy so far at the old current
            each.station_profiles[profile.id] = profile
        station.say(f"profile {profile.id} ({profile.purpose}) on the station")
        return {"status": "Accepted"}, None
    connector = next((c for c in station.connectors if c.number == number), None)
    if connector is None:
        return {"status": "Rejected"}, None
    if profile.purpose == "TxProfile" and connector.session is None:
        return {"status": "Rejected"}, None  # 1.6: a TxProfile needs a transaction
    connector.advance()
    connector.profiles[profile.id] = profile
    limit, _ = connector.limit_a()
    station.say(f"profile {profile.id} ({profile.purpose}) on {number}: now {limit} A")
    return {"status": "Accepted"}, None


def _clear_profile(station: SimulatedStation, p: dict[str, Any]) -> Answer:
    wanted = p.get("id", p.get("chargingProfileId"))
    cleared = False
    for connector in station.connectors:
        for pool in (connector.profiles, connector.station_profiles):
            for key in [k for k in pool if wanted is None or k == wanted]:
                del pool[key]
                cleared = True
    return {"status": "Accepted" if cleared else "Unknown"}, None


def _fixed(payload: dict[str, Any]) -> Callable[[SimulatedStation, dict[str, Any]], Answer]:
    return lambda station, p: (dict(payload), None)


_CSMS_CALLS: dict[str, dict[str, Callable[[SimulatedStation, dict[str, Any]], Answer]]] = {
    V16: {
        "RemoteStartTransaction": _remote_start_16,
        "RemoteStopTransaction": _remote_stop,
        "TriggerMessage": _trigger,
        "ChangeConfiguration": _change_configuration,
        "GetConfiguration": _get_configuration,
        "Reset": _fixed({"status": "Accepted"}),
        "ChangeAvailability": _fixed({"status": "Accepted"}),
        "ClearCache": _fixed({"status": "Accepted"}),
        "UnlockConnector": _fixed({"status": "Unlocked"}),
        "DataTransfer": _fixed({"status": "UnknownVendorId"}),
        "SendLocalList": _fixed({"status": "Accepted"}),
        "GetLocalListVersion": _fixed({"listVersion": 0}),
        "SetChargingProfile": _set_profile,
        "ClearChargingProfile": _clear_profile,
    },
    V201: {
        "RequestStartTransaction": _remote_start_201,
        "RequestStopTransaction": _remote_stop,
        "TriggerMessage": _trigger,
        "SetVariables": _set_variables,
        "GetVariables": _get_variables,
        "Reset": _fixed({"status": "Accepted"}),
        "ChangeAvailability": _fixed({"status": "Accepted"}),
        "ClearCache": _fixed({"status": "Accepted"}),
        "UnlockConnector": _fixed({"status": "Unlocked"}),
        "DataTransfer": _fixed({"status": "UnknownVendorId"}),
        "CostUpdated": _fixed({}),
        "SendLocalList": _fixed({"status": "Accepted"}),
        "GetLocalListVersion": _fixed({"versionNumber": 0}),
        "SetChargingProfile": _set_profile,
        "ClearChargingProfile": _clear_profile,
    },
}
# A 2.1 station answers the 2.0.1 calls alike, and takes our tariffs.
_CSMS_CALLS[V21] = {
    **_CSMS_CALLS[V201],
    "SetDefaultTariff": _fixed({"status": "Accepted"}),
    "ChangeTransactionTariff": _fixed({"status": "Accepted"}),
    "NotifyAllowedEnergyTransfer": _fixed({"status": "Accepted"}),
}


# --- many stations in one process ------------------------------------------------------------


@dataclass(frozen=True)
class Mix:
    """Shares of the steady-state traffic, in messages."""

    heartbeat: float = 0.4
    status: float = 0.2
    meter: float = 0.3
    transaction: float = 0.1


# Lines of notes a process keeps between two reads by the driving process.
MAX_NOTES = 1000


class Swarm:
    """The stations of one process and the traffic driver of the benchmark."""

    def __init__(
        self, specs: list[StationSpec], url: str, behaviour: Behaviour, *, notes: bool = False
    ):
        self.stats = Stats()
        bind = _is_loopback(url)
        self.stations = [SimulatedStation(s, url, behaviour, self.stats, bind=bind) for s in specs]
        self.tasks: list[asyncio.Task[Any]] = []
        # Messages beyond one per driver slot (a session begins with Authorize and a start).
        self.extra_messages = 0
        # What the stations say (`SimulatedStation.say`), until someone takes it.
        self.notes: list[str] = []
        self.notes_dropped = 0
        if notes:
            for station in self.stations:
                station.note = self._note

    def _note(self, line: str) -> None:
        if len(self.notes) < MAX_NOTES:
            self.notes.append(line)
        else:
            self.notes_dropped += 1

    def take_notes(self) -> list[str]:
        notes, self.notes = self.notes, []
        if self.notes_dropped:
            notes.append(f"({self.notes_dropped} more lines not shown)")
            self.notes_dropped = 0
        return notes

    async def connect(self, *, deadline: float) -> dict[str, Any]:
        """Connect and boot every station at once (a boot storm); wait until all are ready."""
        self.tasks = [asyncio.create_task(s.run()) for s in self.stations]
        waiters = [asyncio.create_task(s.booted.wait()) for s in self.stations]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*waiters), max(0.1, deadline - time.time()))
        for waiter in waiters:
            waiter.cancel()
        ready = [s for s in self.stations if s.booted.is_set()]
        return {
            "stations": len(self.stations),
            "ready": len(ready),
            "accepted_at": [s.accepted_at for s in self.stations if s.accepted_at],
            "ready_at": [s.ready_at for s in ready if s.ready_at],
            "boot_latency": [s.boot_latency for s in self.stations if s.boot_latency],
        }

    def start_life(self) -> None:
        for station in self.stations:
            station.start_life()

    async def prime(self, fraction: float, concurrency: int = 50) -> int:
        """Start sessions on a share of the stations, so meter values have somewhere to go."""
        chosen = [s for s in self.stations if s.online.is_set()]
        chosen = random.sample(chosen, int(len(chosen) * fraction))
        limit = asyncio.Semaphore(concurrency)

        async def one(station: SimulatedStation) -> int:
            async with limit:
                connector = station.free_connector()
                if connector is None:
                    return 0
                with contextlib.suppress(Offline, TimeoutError, CallRejected):
                    return int(await station.start_session(connector))
                return 0

        return sum(await asyncio.gather(*(one(s) for s in chosen)))

    async def drive(
        self, *, rate: float, duration: float, mix: Mix, active_share: float = 0.25
    ) -> dict[str, Any]:
        """Send `rate` messages/s for `duration` s, open loop, in the given mix.

        Messages go out on schedule whether or not earlier ones were answered (only one per
        station at a time, as OCPP requires), so a slow CSMS shows as latency and as a
        shortfall of the achieved rate, not as a politely lowered offer.
        """
        loop = asyncio.get_running_loop()
        start = loop.time()
        start_perf = time.perf_counter()
        issued = 0
        self.extra_messages = 0
        in_flight: set[asyncio.Task[Any]] = set()
        online = [s for s in self.stations if s.online.is_set()]
        if not online:
            return {"issued": 0, "window": duration}
        target_active = max(1, int(len(online) * active_share))
        tick = 0.005
        while True:
            elapsed = loop.time() - start
            if elapsed >= duration:
                break
            due = int(elapsed * rate) - issued - self.extra_messages
            for _ in range(max(0, due)):
                # The n-th message of the run is due n / rate seconds after its start.
                due_at = start_perf + (issued + self.extra_messages) / rate
                task = loop.create_task(self._one(online, mix, target_active, due_at))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                issued += 1
            await asyncio.sleep(tick)
        if in_flight:
            await asyncio.wait(in_flight, timeout=60)
        return {"issued": issued + self.extra_messages, "window": duration}

    async def _one(
        self, online: list[SimulatedStation], mix: Mix, target_active: int, due_at: float
    ) -> None:
        MESSAGE_DUE.set(due_at)  # this task's own context
        r = random.random()
        station = self._pick(online)
        try:
            if r < mix.heartbeat:
                await station.heartbeat()
            elif r < mix.heartbeat + mix.status:
                connector = random.choice(station.connectors)
                await station.send_status(connector)
            elif r < mix.heartbeat + mix.status + mix.meter:
                charging = self._pick(online, charging=True)
                if charging is None:
                    await station.heartbeat()
                    return
                await charging.send_meter_values(random.choice(charging.active_connectors()))
            else:
                active = sum(len(s.active_connectors()) for s in online)
                charging = self._pick(online, charging=True)
                if active >= target_active and charging is not None:
                    await charging.stop_session(random.choice(charging.active_connectors()))
                else:
                    connector = station.free_connector()
                    if connector is not None:
                        self.extra_messages += 1
                        await station.start_session(connector)
                    else:
                        await station.stop_session(random.choice(station.connectors))
        except (Offline, TimeoutError, CallRejected):
            pass

    @staticmethod
    def _pick(online: list[SimulatedStation], *, charging: bool = False, tries: int = 8) -> Any:
        """A random station, preferring one with no CALL outstanding."""
        fallback = None
        for _ in range(tries):
            station = random.choice(online)
            if charging and not station.active_connectors():
                continue
            fallback = station
            if not station.call_lock.locked():
                return station
        if charging and fallback is None:
            candidates = [s for s in online if s.active_connectors()]
            return random.choice(candidates) if candidates else None
        return fallback or random.choice(online)

    async def close(self) -> None:
        await asyncio.gather(*(s.stop() for s in self.stations), return_exceptions=True)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def counters(self) -> dict[str, Any]:
        return {
            "online": sum(1 for s in self.stations if s.online.is_set()),
            "active_sessions": sum(len(s.active_connectors()) for s in self.stations),
            "queued_now": sum(len(s.outbox) for s in self.stations),
        }


# --- several processes --------------------------------------------------------------------


def _worker(
    conn: multiprocessing.connection.Connection,
    specs: list[StationSpec],
    url: str,
    behaviour: Behaviour,
    notes: bool = False,
) -> None:
    # Ctrl-C reaches every process of the terminal's group. Stopping is the driving process's
    # decision: it closes the workers in order (a worker dying of KeyboardInterrupt left the
    # driver writing into a broken pipe, and printed tracebacks of its own).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise_open_files_limit()
    _die_with_parent()
    asyncio.run(_worker_loop(conn, specs, url, behaviour, notes))


def _die_with_parent() -> None:
    # Linux: a worker whose driving process is killed outright must not live on, connected.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


async def _worker_loop(
    conn: multiprocessing.connection.Connection,
    specs: list[StationSpec],
    url: str,
    behaviour: Behaviour,
    notes: bool = False,
) -> None:
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

    def readable() -> None:
        try:
            commands.put_nowait(conn.recv())
        except EOFError:
            loop.remove_reader(conn.fileno())
            commands.put_nowait(("close", {}))

    loop.add_reader(conn.fileno(), readable)
    swarm = Swarm(specs, url, behaviour, notes=notes)
    while True:
        name, args = await commands.get()
        reply: dict[str, Any] = {}
        if name == "connect":
            reply = await swarm.connect(deadline=args["deadline"])
        elif name == "life":
            swarm.start_life()
        elif name == "prime":
            reply = {"started": await swarm.prime(args["fraction"])}
        elif name == "drive":
            reply = await swarm.drive(
                rate=args["rate"], duration=args["duration"], mix=args.get("mix", Mix())
            )
        elif name == "outage":
            for station in random.sample(
                swarm.stations, int(len(swarm.stations) * args["fraction"])
            ):
                await station.outage(args["seconds"])
        elif name == "settle":
            deadline = time.monotonic() + args["within"]
            # Polled: "nothing queued and nothing in flight" spans thousands of stations.
            while time.monotonic() < deadline and (  # noqa: ASYNC110
                any(s.outbox or s.call_lock.locked() for s in swarm.stations)
            ):
                await asyncio.sleep(0.2)
        elif name == "notes":
            reply = {"notes": swarm.take_notes()}
        elif name == "stats":
            reply = {"stats": swarm.stats.to_dict(), **swarm.counters()}
            if args.get("reset"):
                swarm.stats.latencies.clear()
        elif name == "close":
            await swarm.close()
            with contextlib.suppress(OSError):
                conn.send({})
            return
        conn.send(reply)


class Fleet:
    """Stations spread over worker processes, driven by commands from this process."""

    def __init__(
        self,
        specs: list[StationSpec],
        url: str,
        behaviour: Behaviour,
        *,
        processes: int = 2,
        notes: bool = False,
    ):
        self.processes = max(1, min(processes, len(specs)))
        self.shares = [specs[i :: self.processes] for i in range(self.processes)]
        self.url = url
        self.behaviour = behaviour
        # Stations say what they do (connected, waiting, failed to connect: see `notes()`).
        self.with_notes = notes
        self.workers: list[multiprocessing.process.BaseProcess] = []
        self.pipes: list[multiprocessing.connection.Connection] = []

    def start(self) -> None:
        # spawn: the workers start clean, with no copy of a Django process's connections.
        context = multiprocessing.get_context("spawn")
        # A worker ignores Ctrl-C (see _worker); started with SIGINT ignored, its interpreter
        # never installs the KeyboardInterrupt handler, so a Ctrl-C while it is still
        # starting cannot kill it either.
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            for share in self.shares:
                parent, child = context.Pipe()
                process = context.Process(
                    target=_worker,
                    args=(child, share, self.url, self.behaviour, self.with_notes),
                    daemon=True,
                )
                process.start()
                child.close()
                self.workers.append(process)
                self.pipes.append(parent)
        finally:
            if main and previous is not None:
                signal.signal(signal.SIGINT, previous)

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self.workers if w.pid is not None]

    def command(self, name: str, timeout: float = 3600, **args: Any) -> list[dict[str, Any]]:
        """Send a command to every worker at once and wait for all replies.

        RuntimeError when a worker is gone (its pipe broken or closed), TimeoutError when one
        does not answer in time.
        """
        for pipe, worker in zip(self.pipes, self.workers, strict=True):
            try:
                pipe.send((name, args))
            except OSError:
                raise RuntimeError(f"simulator process {worker.pid} died") from None
        replies = []
        deadline = time.monotonic() + timeout
        for pipe, worker in zip(self.pipes, self.workers, strict=True):
            try:
                while not pipe.poll(0.5):
                    if not worker.is_alive():
                        raise RuntimeError(f"simulator process {worker.pid} died")
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"simulator command {name} timed out")
                replies.append(pipe.recv())
            except (OSError, EOFError):
                raise RuntimeError(f"simulator process {worker.pid} died") from None
        return replies

    def notes(self) -> list[str]:
        """What the stations said since the last call, oldest first per process."""
        return [line for reply in self.command("notes") for line in reply["notes"]]

    def stats(self, *, reset: bool = False) -> tuple[Stats, dict[str, int]]:
        replies = self.command("stats", reset=reset)
        counters = {
            key: sum(r[key] for r in replies) for key in ("online", "active_sessions", "queued_now")
        }
        return Stats.merged(r["stats"] for r in replies), counters

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.command("close", timeout=60)
        for worker in self.workers:
            worker.join(10)
        self.terminate()

    def terminate(self) -> None:
        """End the workers at once, connections and all (what a second Ctrl-C asks for)."""
        for worker in self.workers:
            if worker.is_alive():
                worker.terminate()
                worker.join(5)


def fleet_specs(
    *, prefix: str, count: int, protocols: list[str], connectors: int, seed: str, start: int = 0
) -> list[StationSpec]:
    """Generated stations: <prefix><number>, protocols round-robin, derived passwords."""
    width = max(5, len(str(start + count)))
    specs = []
    for i in range(start, start + count):
        identity = f"{prefix}{i:0{width}d}"
        specs.append(
            StationSpec(
                identity=identity,
                protocol=protocols[i % len(protocols)],
                password=generated_password(identity, seed),
                connectors=connectors,
                source_ip=source_address(i),
            )
        )
    return specs
