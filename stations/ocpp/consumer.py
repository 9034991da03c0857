"""The OCPP-J websocket consumer: one instance per connected charging station.

Thin by design: it negotiates the subprotocol, admits the station, parses and validates frames,
routes each CALL to the per-version handler (`stations.ocpp.v16.handlers`, `v201.handlers`) and
answers it, and sends the station's queued commands. Every malformed frame gets the right
CALLERROR and the connection lives on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from typing import Any
from urllib.parse import unquote

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from stations import services as network
from stations.commands import results
from stations.commands import services as queue
from stations.ocpp import delivery, protocol
from stations.ocpp.commands import outcome
from stations.ocpp.db import db
from stations.ocpp.protocol import Frame
from stations.ocpp.v16 import handlers as v16
from stations.ocpp.v201 import handlers as v201

logger = logging.getLogger(__name__)

NODE = settings.NODE_NAME or f"{os.uname().nodename}:{os.getpid()}"


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

    async def connect(self) -> None:
        self.identity = unquote(self.scope["url_route"]["kwargs"]["identity"])
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

        offered = [p.strip() for p in self.scope.get("subprotocols", [])]
        # Honour the charger's order of preference among the versions we speak.
        chosen = next((p for p in offered if p in protocol.SUPPORTED_SUBPROTOCOLS), None)
        if chosen is None:
            # No common protocol: complete the handshake without the header, then close.
            await self.accept()
            await self.close(code=1002)
            return

        headers = dict(self.scope.get("headers", []))
        cert_identity = None
        client = self.scope.get("client") or ("", 0)
        if client[0] in settings.OCPP_TRUSTED_PROXIES:
            subject = headers.get(settings.OCPP_CLIENT_CERT_HEADER.lower().encode())
            if subject:
                cert_identity = network.client_cert_identity(subject.decode("latin-1"))
        admission = await db(network.station_admit)(
            identity=self.identity,
            basic_auth=network.parse_basic_auth(headers.get(b"authorization")),
            cert_identity=cert_identity,
        )
        if not admission.accepted:
            logger.warning("refused %s from %s: %s", self.identity, client[0], admission.reason)
            await self.close()  # before accept(): daphne answers the handshake with HTTP 403
            return

        self.station_id = admission.station_id or 0
        self.protocol = chosen
        self.registration_status = admission.registration_status
        self.trace_enabled = admission.trace_enabled
        self.cost_display_enabled = admission.cost_display_enabled
        self.handlers = v16.Handlers(self) if chosen == protocol.V16 else v201.Handlers(self)

        # Recorded before the handshake completes, so that a station reconnecting at once
        # finds this connection and replaces it rather than racing it.
        self.connection_id, replaced = await db(network.station_connected)(
            station_id=self.station_id,
            protocol=chosen,
            channel_name=self.channel_name,
            remote_addr=str(client[0]),
            node=NODE,
            security_profile=admission.security_profile,
        )
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
        await db(results.commands_fail_unanswered)(station_id=self.station_id)
        self._commands_wake()

    async def disconnect(self, code: int) -> None:
        self.socket_closed = True
        for future in self.pending.values():
            if not future.done():
                future.cancel()
        if not self.station_id:
            return
        await delivery.leave(self)
        if self.connection_id:
            await db(network.station_disconnected)(
                station_id=self.station_id,
                connection_id=self.connection_id,
                channel_name=self.channel_name,
                reason=self.closing_reason or f"websocket closed ({code})",
            )

    async def connection_replaced(self, message: dict[str, Any]) -> None:
        self.closing_reason = "replaced by a newer connection"
        self.connection_id = 0  # the new connection already closed this one's history row
        await self.close(code=4000)

    # --- frames ---------------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            text_data = (bytes_data or b"").decode("utf-8", errors="replace")
        log: list[tuple[str, str, bool]] = []
        try:
            frame = protocol.parse_frame(text_data)
        except protocol.FrameError as error:
            reply = protocol.call_error(
                self.protocol, error.message_id, error.kind, error.description
            )
            await self.send(reply)
            await self._log([("in", text_data, True), ("out", reply, True)])
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
        if self.trace_enabled or failed:
            log = [("in", text_data, failed), ("out", reply, failed)]
            await self._log(log)
        await self.touch()

    async def _answer(self, frame: Frame) -> tuple[str, bool]:
        """The reply to a CALL and whether it is a CALLERROR."""
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
            response = await handler(frame.payload)
            # Our own answers are checked too: a bug here must not put an invalid frame on the
            # wire, where the charger would retry or drop it.
            try:
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
        except Exception:
            logger.exception("%s: %s failed", self.identity, frame.action)
            return protocol.call_error(
                self.protocol,
                frame.message_id,
                "InternalError",
                "The CSMS could not process this message",
            ), True
        return protocol.call_result(frame.message_id, response), False

    async def _log(self, entries: list[tuple[str, str, bool]]) -> None:
        try:
            await db(network.message_log_write)(
                station_id=self.station_id or None, identity=self.identity, entries=entries
            )
        except Exception:  # the log must never break the conversation with the charger
            logger.exception("message log write failed for %s", self.identity)

    async def touch(self, *, force: bool = False) -> None:
        """Record that the station is alive; throttled, since every frame would otherwise write."""
        now = time.monotonic()
        if force or now - self.last_touch >= settings.OCPP_LAST_SEEN_WRITE_INTERVAL:
            self.last_touch = now
            await db(network.station_seen)(station_id=self.station_id)

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
