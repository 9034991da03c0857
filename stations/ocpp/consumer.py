"""The OCPP-J websocket consumer: one instance per connected charging station.

Thin by design: it negotiates the subprotocol, admits the station, parses and validates frames,
routes each CALL to the per-version handler (`stations.ocpp.v16.handlers`, `v201.handlers`) and
answers it, and sends the station's queued commands. Every malformed frame gets the right
CALLERROR and the connection lives on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import time
import uuid
from typing import Any

from asgiref.typing import WebSocketResponseBodyEvent, WebSocketResponseStartEvent
from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError, InterfaceError
from django.utils import timezone

from stations import admission
from stations import services as network
from stations.commands import results
from stations.commands import services as queue
from stations.monitoring import protection
from stations.ocpp import bounds, delivery, limits, protocol
from stations.ocpp.commands import outcome
from stations.ocpp.db import db
from stations.ocpp.protocol import Frame
from stations.ocpp.v16 import handlers as v16
from stations.ocpp.v21 import handlers as v21
from stations.ocpp.v201 import handlers as v201

# What a database call can fail with besides a bug: "database is locked", a lost or closed
# connection (InterfaceError is no DatabaseError in Django's hierarchy).
DATABASE_ERRORS = (DatabaseError, InterfaceError)

logger = logging.getLogger(__name__)

NODE = settings.NODE_NAME or f"{os.uname().nodename}:{os.getpid()}"
IDENTITY = re.compile(settings.OCPP_IDENTITY_PATTERN)


# The ASGI WebSocket Denial Response extension (cpo.lib.daphne_server adds it to daphne).
DENIAL_EXTENSION = "websocket.http.response"
# Refusals that are about the credential: answered 401 with a Basic challenge (RFC 7235; the
# OCPP security profiles 1 and 2), where the server can send it.
CREDENTIAL_REASONS = ("credentials required", "wrong credentials", "unknown identity")
AUTH_CHALLENGE = b'Basic realm="OCPP", charset="UTF-8"'


class RefusingConsumer(AsyncWebsocketConsumer):
    """Every websocket path that is not an OCPP station's: refused at the handshake (daphne
    answers HTTP 403), instead of the router's "no route" error (HTTP 500)."""

    async def connect(self) -> None:
        await self.close()


class OcppConsumer(AsyncWebsocketConsumer):
    station_id: int
    protocol: str
    registration_status: str

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels runs aclose_old_connections() on its one thread-sensitive thread before
        # every message: with thousands of chargers every frame would queue behind that single
        # thread. Every database call here goes through database_sync_to_async, which closes
        # stale connections on the thread that uses them.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def refuse_unauthorized(self) -> None:
        """Refuse the handshake with HTTP 401 and a Basic challenge, or, on a server without
        the denial extension, with websocket.close (HTTP 403)."""
        await self.refuse_with(401, [(b"www-authenticate", AUTH_CHALLENGE)], b"Unauthorized\n")

    async def refuse_with(
        self, status: int, headers: list[tuple[bytes, bytes]], text: bytes
    ) -> None:
        """Refuse the handshake with this HTTP answer, or, on a server without the denial
        extension, with websocket.close (HTTP 403)."""
        if DENIAL_EXTENSION not in (self.scope.get("extensions") or {}):
            await self.close()
            return
        start: WebSocketResponseStartEvent = {
            "type": "websocket.http.response.start",
            "status": status,
            "headers": [*headers, (b"content-type", b"text/plain; charset=utf-8")],
        }
        body: WebSocketResponseBodyEvent = {
            "type": "websocket.http.response.body",
            "body": text,
            "more_body": False,
        }
        await self.base_send(start)
        await self.base_send(body)

    async def connect(self) -> None:
        # The ASGI path is percent-decoded once already (by daphne): decoding it again would
        # let DEMO%252D16 in as DEMO-16.
        self.identity = self.scope["url_route"]["kwargs"]["identity"]
        self.station_id = 0
        self.connection_id = 0
        self.closing_reason = ""
        self.last_touch = 0.0
        self.pending: dict[str, asyncio.Future[protocol.Frame]] = {}
        self.call_lock = asyncio.Lock()
        self.handlers: v16.Handlers | v201.Handlers | None = None
        self.command_pump: asyncio.Task[None] | None = None
        self.commands_due = False
        self.socket_closed = False
        self.rate_limiter = limits.RateLimiter.from_settings()
        self.rate_refused = 0
        self.protocol = protocol.V201
        # Writes a handler wants done once its answer is on the wire (a CertificateSigned
        # must follow the SignCertificate answer): rare, so one falsy check per frame.
        self.after_reply: list[tuple[Any, dict[str, Any]]] = []

        client = self.scope.get("client") or ("", 0)
        if not IDENTITY.fullmatch(self.identity):
            limits.log_throttled(
                logger,
                f"identity:{client[0]}",
                logging.WARNING,
                "refused a handshake from %s: identity %r does not match OCPP_IDENTITY_PATTERN",
                client[0],
                self.identity[:60],
            )
            await self.close()  # before accept(): daphne answers the handshake with HTTP 403
            return

        offered = [p.strip() for p in self.scope.get("subprotocols", [])]
        # Honour the charger's order of preference among the versions we speak.
        chosen = next((p for p in offered if p in protocol.SUPPORTED_SUBPROTOCOLS), None)
        if chosen is None:
            await self._no_common_subprotocol(offered)
            return

        headers = dict(self.scope.get("headers", []))
        cert_identity = None
        cert_serial = ""
        server = self.scope.get("server") or ("", 0)
        # TLS: served by this process itself (daphne -e ssl:...), or terminated by a trusted
        # proxy that says so, or (by setting) by something in front that does not.
        tls = server[1] in settings.OCPP_TLS_PORTS or settings.OCPP_PROFILE2_ALLOW_PLAIN
        if client[0] in settings.OCPP_TRUSTED_PROXIES:
            subject = headers.get(settings.OCPP_CLIENT_CERT_HEADER.lower().encode())
            if subject:
                cert_identity = network.client_cert_identity(subject.decode("latin-1"))
                serial = headers.get(settings.OCPP_CLIENT_CERT_SERIAL_HEADER.lower().encode())
                cert_serial = serial.decode("latin-1").strip()[:80] if serial else ""
            tls = tls or headers.get(b"x-forwarded-proto", b"").lower() == b"https"
        address = admission.source_address(str(client[0]), headers)
        gate = await db(admission.auth_gate)(identity=self.identity, address=address)
        if gate.locked:
            limits.log_throttled(
                logger,
                f"locked:{self.identity}:{address}",
                logging.WARNING,
                "refused %s from %s: %s locked out after failed authentications",
                self.identity,
                address,
                gate.locked,
            )
            await self.close()
            return
        if gate.delay:
            await asyncio.sleep(gate.delay)
        try:
            admitted = await db(network.station_admit)(
                identity=self.identity,
                basic_auth=network.parse_basic_auth(headers.get(b"authorization")),
                cert_identity=cert_identity,
                tls=tls,
                cert_serial=cert_serial,
            )
        except DATABASE_ERRORS:
            # "database is locked", a lost connection: the charger tries again, not a 500.
            limits.log_throttled(
                logger,
                "admission-db",
                logging.ERROR,
                "could not admit %s: database error",
                self.identity,
                exc_info=True,
            )
            await self.close()
            return
        if not admitted.accepted:
            limits.log_throttled(
                logger,
                f"refused:{self.identity}:{admitted.reason}",
                logging.WARNING,
                "refused %s from %s: %s",
                self.identity,
                client[0],
                admitted.reason,
            )
            if admitted.reason in ("wrong credentials", "unknown identity"):
                try:
                    await db(admission.auth_failed)(
                        # An unknown identity is counted against the address only.
                        identity=self.identity if admitted.reason == "wrong credentials" else "",
                        address=address,
                    )
                except DATABASE_ERRORS:
                    logger.exception("could not record the lockout of %s", self.identity)
            if admitted.reason in CREDENTIAL_REASONS:
                await self.refuse_unauthorized()  # HTTP 401, WWW-Authenticate: Basic
            else:
                await self.close()  # before accept(): HTTP 403
            return
        if gate.failures:
            await db(admission.auth_succeeded)(identity=self.identity, gate=gate)
        admission_result = admitted

        self.station_id = admission_result.station_id or 0
        self.protocol = chosen
        self.registration_status = admission_result.registration_status
        self.trace_enabled = admission_result.trace_enabled
        self.cost_display_enabled = admission_result.cost_display_enabled
        if chosen == protocol.V16:
            self.handlers = v16.Handlers(self)
        elif chosen == protocol.V21:
            self.handlers = v21.Handlers(self)
        else:
            self.handlers = v201.Handlers(self)

        # Reconnect flood: refused for a cool-down before anything is recorded
        # (stations.monitoring.protection), with HTTP 429 and Retry-After.
        if self.station_id:
            try:
                refused_until = await db(protection.reconnect_gate)(station_id=self.station_id)
            except DATABASE_ERRORS:
                refused_until = None  # the admission went through: the gate is no reason to fail
                logger.exception("could not check the reconnect rate of %s", self.identity)
            if refused_until is not None:
                limits.log_throttled(
                    logger,
                    f"cooldown:{self.identity}",
                    logging.WARNING,
                    "refused %s from %s: reconnect cool-down until %s",
                    self.identity,
                    client[0],
                    refused_until.isoformat(timespec="seconds"),
                )
                self.station_id = 0
                # 429 with the seconds left (RFC 6585); 403 on a server without the extension.
                wait = max(1, math.ceil((refused_until - timezone.now()).total_seconds()))
                await self.refuse_with(
                    429,
                    [(b"retry-after", str(wait).encode())],
                    b"Too many reconnects: retry later\n",
                )
                return

        # Recorded before the handshake completes, so that a station reconnecting at once
        # finds this connection and replaces it rather than racing it.
        try:
            self.connection_id, replaced = await db(network.station_connected)(
                station_id=self.station_id,
                protocol=chosen,
                channel_name=self.channel_name,
                remote_addr=str(client[0]),
                node=NODE,
                security_profile=admission_result.security_profile,
            )
        except DATABASE_ERRORS:
            limits.log_throttled(
                logger,
                "connected-db",
                logging.ERROR,
                "could not record the connection of %s: database error",
                self.identity,
                exc_info=True,
            )
            self.station_id = 0  # nothing recorded: the disconnect has nothing to undo
            await self.close()
            return
        if replaced and replaced != self.channel_name and self.channel_layer is not None:
            # The newer connection wins: tell the process holding the old one to close it.
            # The old node may be gone (its socket is dead then anyway), or Redis away.
            if not await delivery.layer_send(self, replaced, {"type": "connection.replaced"}):
                logger.info("could not reach the previous connection of %s", self.identity)
        # Never fails: without the channel layer, the polled fallback delivers the commands.
        await delivery.join(self)
        await self.accept(chosen)
        self.last_touch = time.monotonic()
        # Commands queued while the station was away go out now, oldest first.
        await self._side_write(results.commands_fail_unanswered, station_id=self.station_id)
        self._commands_wake()

    async def _no_common_subprotocol(self, offered: list[str]) -> None:
        """No subprotocol the charger offers is one we speak (or it offers none).

        OCPP-J 2.0.1 (part 4) and 2.1: the CSMS completes the handshake without a
        Sec-WebSocket-Protocol header and then immediately closes the connection. 1.6J leaves
        the choice to the server; the same answer tells a charger what happened. The close code
        is 1000 (normal closure) with a reason naming what we speak: 1002 (protocol error) is a
        code only the failing endpoint's websocket layer sends, and daphne refuses it from an
        application.
        """
        client = self.scope.get("client") or ("", 0)
        limits.log_throttled(
            logger,
            f"subprotocol:{self.identity}",
            logging.WARNING,
            "%s from %s offered no subprotocol we speak (%s): handshake completed and closed",
            self.identity,
            client[0],
            ", ".join(offered)[:100] or "none",
        )
        await self.accept()
        await self.close(
            code=1000,
            reason="Supported subprotocols: " + ", ".join(protocol.SUPPORTED_SUBPROTOCOLS),
        )

    async def disconnect(self, code: int) -> None:
        self.socket_closed = True
        for future in self.pending.values():
            if not future.done():
                future.cancel()
        if not self.station_id:
            return
        await delivery.leave(self)
        if self.connection_id:
            # Not retried: the heartbeat sweep marks the station offline if this is lost.
            await self._side_write(
                network.station_disconnected,
                station_id=self.station_id,
                connection_id=self.connection_id,
                channel_name=self.channel_name,
                reason=self.closing_reason or f"websocket closed ({code})",
            )
            if self.handlers is not None:
                # An energy-managed station that goes away is counted at its last allocation
                # until its dead-man time: its site is allocated again without it.
                with contextlib.suppress(Exception):
                    await self.handlers.energy_notify("offline")

    async def connection_replaced(self, message: dict[str, Any]) -> None:
        self.closing_reason = "replaced by a newer connection"
        self.connection_id = 0  # the new connection already closed this one's history row
        await self.close(code=4000)

    # --- frames ---------------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            text_data = (bytes_data or b"").decode("utf-8", errors="replace")
        if self.rate_limiter is not None and not self.rate_limiter.allow():
            await self._rate_refuse(text_data)
            return
        if limits.too_big(text_data):
            reply = protocol.call_error(
                self.protocol,
                protocol.recovered_message_id(text_data[:100]),
                "FormatViolation",
                f"Frame exceeds {settings.OCPP_MAX_FRAME_BYTES} bytes",
            )
            await self.send(reply)
            await self._log_error(text_data, reply)
            return
        try:
            frame = protocol.parse_frame(text_data, self.protocol)
        except protocol.FrameError as error:
            reply = protocol.call_error(
                self.protocol, error.message_id, error.kind, error.description
            )
            await self.send(reply)
            await self._log_error(text_data, reply)
            return

        if frame.message_type == protocol.SEND:
            await self._send_received(frame, text_data)
            return
        if frame.message_type == protocol.CALLRESULTERROR:
            # 2.1: the station could not process one of our CALLRESULTs. Nothing to answer;
            # the exchange is kept in the message log.
            limits.log_throttled(
                logger,
                f"callresulterror:{self.identity}",
                logging.WARNING,
                "%s could not process our answer to %s: %s %s",
                self.identity,
                frame.message_id,
                frame.error_code,
                frame.error_description,
            )
            await self._log([("in", text_data, True)])
            return
        if frame.message_type in (protocol.CALLRESULT, protocol.CALLERROR):
            future = self.pending.get(frame.message_id)
            if future is not None and not future.done():
                future.set_result(frame)
            if self.trace_enabled:
                await self._log([("in", text_data, frame.message_type == protocol.CALLERROR)])
            return

        reply, failed = await self._answer(frame)
        await self.send(reply)
        if self.after_reply:
            await self._after_reply()
        if failed:
            await self._log_error(text_data, reply)
        elif self.trace_enabled:
            await self._log([("in", text_data, False), ("out", reply, False)])
        await self.touch()

    async def _send_received(self, frame: Frame, text_data: str) -> None:
        """OCPP-J 2.1 SEND: handled as a CALL, but never answered, not even when it is
        invalid (a CALLERROR would answer a message that expects none): errors are logged."""
        reply, failed = await self._answer(frame, expect_response=False)
        if failed:
            await self._log_error(text_data, reply)
        elif self.trace_enabled:
            await self._log([("in", text_data, False)])
        await self.touch()

    async def _rate_refuse(self, text_data: str) -> None:
        """A frame over the connection's rate: a CALLERROR, without parsing or logging it;
        the first refusal records an incident, the burst's worth again closes the socket."""
        self.rate_refused += 1
        if self.rate_refused == 1:
            limits.log_throttled(
                logger,
                f"rate:{self.identity}",
                logging.WARNING,
                "%s exceeds %d messages/s: refusing its frames",
                self.identity,
                settings.OCPP_RATE_LIMIT_PER_SECOND,
            )
            await self._side_write(
                network.station_incident_record,
                station_id=self.station_id,
                type="RateLimitExceeded",
                tech_info=(
                    f"more than {settings.OCPP_RATE_LIMIT_PER_SECOND} messages/s "
                    f"(burst {settings.OCPP_RATE_LIMIT_BURST}): frames refused"
                ),
            )
        if self.rate_refused >= settings.OCPP_RATE_LIMIT_BURST:
            self.closing_reason = "rate limit exceeded"
            # 4008: 1008 (policy violation) in the application range, the only codes daphne
            # lets an application close with besides 1000.
            await self.close(code=4008)
            return
        await self.send(
            protocol.call_error(
                self.protocol,
                protocol.recovered_message_id(text_data[:100]),
                "GenericError",
                f"Rate limit of {settings.OCPP_RATE_LIMIT_PER_SECOND} messages/s exceeded",
            )
        )

    async def _answer(self, frame: Frame, *, expect_response: bool = True) -> tuple[str, bool]:
        """The reply to a CALL and whether the exchange goes to the message log as an error
        (a CALLERROR, or a transaction message accepted without its absurd values)."""
        found: list[bounds.Problem] = []
        try:
            handler = self.handlers.handler_for(frame.action) if self.handlers else None
            if handler is None or self.handlers is None:
                if protocol.is_action_of(self.protocol, frame.action):
                    raise protocol.OcppError(
                        "NotSupported", f"{frame.action} is not sent by a charging station"
                    )
                raise protocol.OcppError("NotImplemented", f"Unknown action {frame.action}")
            self.handlers.ensure_allowed(frame.action, self.registration_status)
            protocol.validate(self.protocol, protocol.CALL, frame.action, frame.payload)
            found = bounds.problems(frame.action, frame.payload)
            if not found:
                response = await handler(frame.payload)
            else:
                response = await self._answer_absurd(frame, handler, found)
            # Our own answers are checked too: a bug here must not put an invalid frame on the
            # wire, where the charger would retry or drop it.
            try:
                if expect_response:
                    protocol.validate(self.protocol, protocol.CALLRESULT, frame.action, response)
            except protocol.OcppError as error:
                # The station's CALL was valid: the violation is ours, not one of its message.
                logger.error(
                    "%s: our %s answer breaks its schema: %s",
                    self.identity,
                    frame.action,
                    error.description,
                )
                raise protocol.OcppError(
                    "InternalError", "The CSMS could not process this message"
                ) from None
        except protocol.OcppError as error:
            return protocol.call_error(
                self.protocol, frame.message_id, error.kind, error.description, error.details
            ), True
        except Exception as error:
            # One line a minute per kind of failure, not a traceback per retried message.
            limits.log_throttled(
                logger,
                f"internal:{frame.action}:{type(error).__name__}",
                logging.ERROR,
                "%s: %s failed",
                self.identity,
                frame.action,
                exc_info=True,
            )
            return protocol.call_error(
                self.protocol,
                frame.message_id,
                "InternalError",
                "The CSMS could not process this message",
            ), True
        # A message with absurd values is accepted only when repaired: logged as an error.
        return protocol.call_result(frame.message_id, response), bool(found)

    async def _answer_absurd(
        self, frame: Frame, handler: Any, found: list[bounds.Problem]
    ) -> dict[str, Any]:
        """Schema-valid values out of every sane range (stations.ocpp.bounds): refused, or
        for a transaction message, stored without them and the session flagged."""
        assert self.handlers is not None
        if not bounds.is_transaction_message(self.protocol, frame.action, frame.payload):
            raise protocol.OcppError("PropertyConstraintViolation", found[0].describe())
        repaired = bounds.repair(frame.payload, found)
        limits.log_throttled(
            logger,
            f"absurd:{self.identity}:{frame.action}",
            logging.WARNING,
            "%s: %s with absurd values accepted %s: %s",
            self.identity,
            frame.action,
            "and stored without them" if repaired.payload is not None else "but not stored",
            "; ".join(repaired.dropped),
        )
        if repaired.payload is None:
            return dict(bounds.ACKNOWLEDGED[frame.action])
        self.handlers.anomalies = repaired.dropped
        try:
            return await handler(repaired.payload)
        finally:
            self.handlers.anomalies = ()

    async def _log(self, entries: list[tuple[str, str, bool]]) -> None:
        try:
            await db(network.message_log_write)(
                station_id=self.station_id or None, identity=self.identity, entries=entries
            )
        except Exception:  # the log must never break the conversation with the charger
            limits.log_throttled(
                logger,
                f"message-log:{self.identity}",
                logging.ERROR,
                "message log write failed for %s",
                self.identity,
                exc_info=True,
            )

    async def _log_error(self, frame: str, reply: str) -> None:
        """An erroneous frame and its CALLERROR in the message log (the frame cut to 2 KiB),
        within the station's daily budget of logged erroneous frames."""
        size = min(len(frame), network.LOGGED_ERROR_FRAME_CHARS + 64) + len(reply)
        try:
            allowed = await db(limits.error_log_budget_take)(
                station_id=self.station_id or None, size=size
            )
        except Exception:
            allowed = True
        if not allowed:
            limits.log_throttled(
                logger,
                f"error-budget:{self.identity}",
                logging.WARNING,
                "%s: daily budget of logged erroneous frames (%d bytes) used up; not logged",
                self.identity,
                settings.OCPP_ERROR_LOG_BYTES_PER_DAY,
            )
            return
        await self._log([("in", frame, True), ("out", reply, True)])

    async def _after_reply(self) -> None:
        pending, self.after_reply = self.after_reply, []
        for function, kwargs in pending:
            try:
                await self._side_write(function, **kwargs)
            except Exception:
                # Its answer is sent already: a failure here is logged, never the socket's end.
                logger.exception("%s: %s failed after the answer", self.identity, function.__name__)

    async def _side_write(self, function: Any, **kwargs: Any) -> bool:
        """A write beside the conversation (last seen, connection history, incidents): a
        database error is logged (once a minute) and never closes the socket."""
        try:
            await db(function)(**kwargs)
        except DATABASE_ERRORS:
            limits.log_throttled(
                logger,
                f"side-write:{function.__name__}",
                logging.ERROR,
                "%s: %s failed (database error); the connection goes on",
                self.identity,
                function.__name__,
                exc_info=True,
            )
            return False
        return True

    async def touch(self, *, force: bool = False) -> None:
        """Record that the station is alive; throttled, since every frame would otherwise write.
        A failed write is tried again with the next frame after the interval."""
        now = time.monotonic()
        if force or now - self.last_touch >= settings.OCPP_LAST_SEEN_WRITE_INTERVAL:
            self.last_touch = now
            await self._side_write(network.station_seen, station_id=self.station_id)

    # --- CSMS-initiated calls -------------------------------------------------------------------

    async def call(
        self,
        action: str,
        payload: dict[str, Any],
        *,
        timeout: float,
        message_id: str | None = None,
    ) -> Frame:
        """Send one CALL and wait for its CALLRESULT or CALLERROR (one outstanding at a time)."""
        async with self.call_lock:
            message_id = message_id or str(uuid.uuid4())
            future: asyncio.Future[protocol.Frame] = asyncio.get_running_loop().create_future()
            self.pending[message_id] = future
            frame = protocol.call(message_id, action, payload)
            try:
                await self.send(frame)
                if self.trace_enabled:
                    await self._log([("out", frame, False)])
                return await asyncio.wait_for(future, timeout)
            finally:
                self.pending.pop(message_id, None)

    async def command_send(self, message: dict[str, Any]) -> None:
        """Channel-layer wake-up (group `station.<id>`): commands wait in the database."""
        self._commands_wake()

    def _commands_wake(self) -> None:
        # The pump runs as its own task: a channels consumer handles one message at a time,
        # and the CALLRESULT it waits for arrives as a later websocket message.
        self.commands_due = True
        if not self.socket_closed and (self.command_pump is None or self.command_pump.done()):
            self.command_pump = asyncio.create_task(self._commands_pump())

    async def _commands_pump(self) -> None:
        """Send this station's queued commands in order, one outstanding CALL at a time."""
        while not self.socket_closed:
            self.commands_due = False
            claimed = await db(queue.command_claim_next)(station_id=self.station_id, node=NODE)
            if claimed is None:
                if self.commands_due:
                    continue  # a wake-up arrived while the queue was being read
                return
            if self.socket_closed:
                await db(queue.command_release)(command_id=claimed.id)
                return
            await self._command_run(claimed)

    async def _command_run(self, claimed: queue.ClaimedCommand) -> None:
        record = db(results.command_result_record)
        try:
            frame = await self.call(
                claimed.action,
                claimed.payload,
                timeout=settings.OCPP_RESPONSE_TIMEOUT,
                message_id=claimed.message_id,
            )
        except TimeoutError:
            await record(
                command_id=claimed.id,
                status="timed_out",
                error_description=f"no answer within {settings.OCPP_RESPONSE_TIMEOUT} s",
            )
            return
        except asyncio.CancelledError:
            await record(
                command_id=claimed.id,
                status="failed",
                error_code="ConnectionLost",
                error_description="the connection closed before the station answered",
            )
            raise
        except Exception as error:  # a send on a dying socket; the row must not stay "sent"
            logger.exception("%s: sending %s failed", self.identity, claimed.action)
            await record(
                command_id=claimed.id,
                status="failed",
                error_code="SendFailed",
                error_description=str(error)[:255],
            )
            return
        if frame.message_type == protocol.CALLERROR:
            await record(
                command_id=claimed.id,
                status="failed",
                error_code=frame.error_code,
                error_description=frame.error_description,
                response={"errorDetails": frame.error_details or {}},
            )
            return
        try:
            protocol.validate(self.protocol, protocol.CALLRESULT, claimed.action, frame.payload)
        except protocol.OcppError as error:
            await record(
                command_id=claimed.id,
                status="failed",
                error_code="InvalidResponse",
                error_description=error.description,
                response=frame.payload if isinstance(frame.payload, dict) else None,
            )
            return
        answer = outcome(self.protocol, claimed.action, frame.payload)
        await record(
            command_id=claimed.id,
            status=answer.status,
            result=answer.result,
            response=frame.payload,
        )
        if self.handlers is not None:
            try:
                # What the answer means beyond the command (GetTransactionStatus: whether a
                # session the station forgot can be closed).
                await self.handlers.answered(claimed.action, claimed.payload, frame.payload)
            except Exception:  # the follow-up must not stop the station's command queue
                logger.exception(
                    "%s: handling the answer to %s failed", self.identity, claimed.action
                )
