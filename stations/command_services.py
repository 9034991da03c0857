"""Writes for commands to stations, jobs over many stations and diagnostics uploads.

How a command travels (design.md §4):
1. `command_create` validates the payload against the official schema and stores a queued row.
2. On commit, a wake-up goes to the channel-layer group `station.<id>`; whichever process holds
   the station's socket (any daphne node) receives it. Nothing else travels on the layer: the
   database is the queue, so order and durability do not depend on Redis.
3. That consumer claims queued rows oldest first (`command_claim_next`), sends one CALL at a
   time and stores the answer, CALLERROR or timeout (`command_result_record`).
4. A station that is offline gets its queue on (re)connect; rows past their expiry are never
   sent and are marked expired (`commands_expire`, also run by Celery beat).
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.files.base import File
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from stations import commands as verbs
from stations.commands import CommandError
from stations.models import (
    ChargingStation,
    Command,
    DiagnosticsUpload,
    Job,
    JobTarget,
    LocalAuthList,
    Location,
)

logger = logging.getLogger(__name__)

__all__ = ["CommandError"]

# Statuses in a CALLRESULT that mean the station will do (or did) what it was asked.
_POSITIVE = {"Accepted", "Unlocked", "Scheduled", "RebootRequired", "AcceptedCanceled"}


def _station_wake(station_id: int) -> None:
    """Tell the process holding the station's socket that commands are waiting."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from stations.consumers import station_group

    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(station_group(station_id), {"type": "command.send"})
    except Exception:  # the row is durable; the station gets it on its next connect
        logger.exception("could not wake station %s", station_id)


@transaction.atomic
def command_create(
    *,
    station: ChargingStation,
    verb: str = "",
    params: dict[str, Any] | None = None,
    action: str = "",
    payload: dict[str, Any] | None = None,
    origin: str = Command.Origin.SYSTEM,
    requested_by: Any = None,
    expires_in: timedelta | None = None,
) -> Command:
    """Queue a command: a version-neutral `verb` with `params`, or a raw `action` + `payload`.

    Raises CommandError (nothing stored, nothing sent) when the verb does not exist for the
    station's protocol or the payload is not schema-valid.
    """
    protocol = station.protocol
    if not protocol:
        raise CommandError("the station has not connected yet: its protocol is unknown")
    if verb:
        action, payload = verbs.translate(protocol, verb, params or {})
    else:
        if not action:
            raise CommandError("an action or a verb is required", field="action")
        verbs.validate_call(protocol, action, payload if payload is not None else {})
        payload = payload or {}
    now = timezone.now()
    command = Command.objects.create(
        station=station,
        protocol=protocol,
        verb=verb,
        action=action,
        payload=payload,
        origin=origin,
        requested_by=requested_by if getattr(requested_by, "pk", None) else None,
        created_at=now,
        expires_at=now + (expires_in or verbs.expiry_for(action, verb)),
    )
    station_id = station.pk
    transaction.on_commit(lambda: _station_wake(station_id))
    return command


@dataclass(frozen=True)
class ClaimedCommand:
    id: int
    action: str
    payload: dict[str, Any]
    message_id: str


def command_claim_next(*, station_id: int, node: str) -> ClaimedCommand | None:
    """Claim the oldest queued, unexpired command of a station for sending, or None.

    The claim is an UPDATE guarded by the old status, so two connections of one station (the
    moment a newer one replaces the older) never send the same command twice.
    """
    now = timezone.now()
    while True:
        row = (
            Command.objects.filter(station_id=station_id, status=Command.Status.QUEUED)
            .order_by("id")
            .values("id", "action", "payload", "expires_at")
            .first()
        )
        if row is None:
            return None
        if row["expires_at"] <= now:
            Command.objects.filter(pk=row["id"], status=Command.Status.QUEUED).update(
                status=Command.Status.EXPIRED,
                completed_at=now,
                error_description="expired before the station could receive it",
            )
            continue
        message_id = str(uuid.uuid4())
        claimed = Command.objects.filter(pk=row["id"], status=Command.Status.QUEUED).update(
            status=Command.Status.SENT, sent_at=now, node=node[:100], message_id=message_id
        )
        if claimed == 1:
            return ClaimedCommand(row["id"], row["action"], row["payload"], message_id)


def command_release(*, command_id: int) -> None:
    """Put back a claimed command whose connection closed before it went out."""
    Command.objects.filter(pk=command_id, status=Command.Status.SENT).update(
        status=Command.Status.QUEUED, sent_at=None, node="", message_id=""
    )


def commands_fail_unanswered(*, station_id: int) -> int:
    """On (re)connect: commands sent on an earlier connection will never be answered.

    They are failed, not re-sent: the station may have acted on them (a remote start twice
    would start two sessions).
    """
    ids = list(
        Command.objects.filter(station_id=station_id, status=Command.Status.SENT).values_list(
            "pk", flat=True
        )
    )
    for command_id in ids:
        command_result_record(
            command_id=command_id,
            status=Command.Status.FAILED,
            error_code="ConnectionLost",
            error_description="the connection closed before the station answered",
        )
    return len(ids)


def _status_from(response: Any) -> str:
    if isinstance(response, dict):
        status = response.get("status")
        if status is not None:
            return Command.Status.ACCEPTED if status in _POSITIVE else Command.Status.REJECTED
        results = response.get("setVariableResult")
        if results and any(
            item.get("attributeStatus") not in ("Accepted", "RebootRequired") for item in results
        ):
            return Command.Status.REJECTED
    return Command.Status.ACCEPTED


@transaction.atomic
def command_result_record(
    *,
    command_id: int,
    response: dict[str, Any] | None = None,
    status: str = "",
    error_code: str = "",
    error_description: str = "",
) -> Command | None:
    """Store the outcome of a sent command: the CALLRESULT (status derived from it), a
    CALLERROR (failed), a timeout or a lost connection. Returns None if already final."""
    command = Command.objects.select_for_update().filter(pk=command_id).first()
    if command is None or command.is_final:
        return None
    command.status = status or _status_from(response)
    command.response = response
    command.error_code = error_code[:50]
    command.error_description = error_description[:255]
    command.completed_at = timezone.now()
    command.save(
        update_fields=[
            "status",
            "response",
            "error_code",
            "error_description",
            "completed_at",
        ]
    )
    _after_command(command)
    return command


def _after_command(command: Command) -> None:
    """Follow-ups of a final command: job progress and local list versions."""
    target = JobTarget.objects.filter(command=command, status=JobTarget.Status.RUNNING).first()
    if target is not None and command.status != Command.Status.ACCEPTED:
        _target_attempt_failed(
            target,
            f"{command.action} {command.get_status_display()}: "
            f"{command.error_description or _response_status(command)}",
        )
    if command.origin == Command.Origin.LOCAL_LIST:
        local_list_result_record(command=command)


def _response_status(command: Command) -> str:
    if isinstance(command.response, dict):
        return str(command.response.get("status", ""))
    return ""


def commands_expire(*, now: datetime | None = None) -> int:
    """Expire queued commands past their expiry (their station stayed offline too long)."""
    now = now or timezone.now()
    ids = list(
        Command.objects.filter(status=Command.Status.QUEUED, expires_at__lte=now).values_list(
            "pk", flat=True
        )[:1000]
    )
    count = 0
    for command_id in ids:
        if (
            command_result_record(
                command_id=command_id,
                status=Command.Status.EXPIRED,
                error_description="expired before the station could receive it",
            )
            is not None
        ):
            count += 1
    return count


def command_wait(*, command_id: int, timeout: float) -> Command:
    """Block until the command is final or `timeout` seconds passed (sync callers only)."""
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        command = Command.objects.get(pk=command_id)
        if command.is_final or time.monotonic() >= deadline:
            return command
        time.sleep(0.1)


# --- Local authorization lists: version bookkeeping ------------------------------------------


@transaction.atomic
def local_list_send(
    *,
    station: ChargingStation,
    entries: dict[str, dict[str, Any]],
    full: bool,
) -> Command | None:
    """Send the station the list `entries` (uid -> entry), as a differential update against
    what it last confirmed, or in full. Returns None when there is nothing to send.

    The new version and entries are remembered as pending until the station accepts them.
    """
    state, _ = LocalAuthList.objects.select_for_update().get_or_create(station=station)
    if state.status == LocalAuthList.Status.UNSUPPORTED and not full:
        return None
    full = full or state.version == 0
    if full:
        changes = [{"id_token": uid, **entry} for uid, entry in sorted(entries.items())]
    else:
        changes = [
            {"id_token": uid, **entry}
            for uid, entry in sorted(entries.items())
            if state.entries.get(uid) != entry
        ] + [{"id_token": uid} for uid in sorted(set(state.entries) - set(entries))]
        if not changes:
            return None
    version = max(state.version, state.pending_version or 0) + 1
    command = command_create(
        station=station,
        verb="send_local_list",
        origin=Command.Origin.LOCAL_LIST,
        params={
            "version": version,
            "update_type": "Full" if full else "Differential",
            "entries": changes,
        },
    )
    state.pending_command = command
    state.pending_version = version
    state.pending_entries = entries
    state.pending_full = full
    state.status = LocalAuthList.Status.PENDING
    state.save()
    return command


def local_list_result_record(*, command: Command) -> None:
    """Apply a station's answer to a SendLocalList. Failed or VersionMismatch after a
    differential update asks for a full resync (done by a Celery task after commit)."""
    state = LocalAuthList.objects.select_for_update().filter(station_id=command.station_id).first()
    if state is None or state.pending_command_id != command.pk:
        return
    answer = _response_status(command)
    resync = False
    if command.status == Command.Status.ACCEPTED:
        state.version = state.pending_version or state.version
        state.entries = state.pending_entries or {}
        state.status = LocalAuthList.Status.IN_SYNC
        state.synced_at = timezone.now()
    elif answer == "NotSupported":
        state.status = LocalAuthList.Status.UNSUPPORTED
    else:
        state.status = LocalAuthList.Status.FAILED
        resync = answer in ("VersionMismatch", "Failed") and not state.pending_full
    # pending_version stays: versions sent only ever grow, even past a refused update.
    state.pending_command = None
    state.pending_entries = None
    state.save()
    if resync:
        station_id = command.station_id

        def enqueue() -> None:
            from stations.tasks import local_list_sync

            local_list_sync.delay(station_id, True)

        transaction.on_commit(enqueue)


# --- Jobs ---------------------------------------------------------------------------------------

_JOB_ACTIONS = {
    "DiagnosticsStatusNotification": Job.Kind.DIAGNOSTICS,
    "LogStatusNotification": Job.Kind.DIAGNOSTICS,
    "FirmwareStatusNotification": Job.Kind.FIRMWARE,
    "SignedFirmwareStatusNotification": Job.Kind.FIRMWARE,
}
_SUCCEEDED = {"Uploaded", "Installed"}
_FAILED = {
    "UploadFailed",
    "UploadFailure",
    "BadMessage",
    "NotSupportedOperation",
    "PermissionDenied",
    "DownloadFailed",
    "InstallationFailed",
    "InstallVerificationFailed",
    "InvalidSignature",
    "InvalidCertificate",
    "RevokedCertificate",
}


def job_stations(
    *,
    location: Location | None = None,
    station_model: str = "",
    station_filter: str = "",
    station_ids: list[int] | None = None,
) -> QuerySet[ChargingStation]:
    """Stations a job targets: every station that has connected once, narrowed by site,
    model, identity prefix and an explicit id list."""
    stations = ChargingStation.objects.exclude(protocol="")
    if location is not None:
        stations = stations.filter(location=location)
    if station_model:
        stations = stations.filter(model__iexact=station_model)
    if station_filter:
        stations = stations.filter(identity__startswith=station_filter)
    if station_ids is not None:
        stations = stations.filter(pk__in=station_ids)
    return stations.order_by("identity")


@transaction.atomic
def job_create(
    *,
    kind: str,
    parameters: dict[str, Any],
    location: Location | None = None,
    station_model: str = "",
    station_filter: str = "",
    station_ids: list[int] | None = None,
    concurrency: int = 10,
    max_attempts: int = 3,
    target_timeout: int = 3600,
    created_by: Any = None,
    name: str = "",
) -> Job:
    """Create a diagnostics or firmware job over the chosen stations and start it.

    Parameters: diagnostics {log_type?, start_time?, stop_time?, upload_base_url?};
    firmware {location, retrieve_at, install_at?, signing_certificate?, signature?,
    retries?, retry_interval?}.
    """
    if kind not in Job.Kind.values:
        raise CommandError(f"unknown job kind {kind!r}", field="kind")
    if kind == Job.Kind.FIRMWARE and not (
        parameters.get("location") and parameters.get("retrieve_at")
    ):
        raise CommandError("a firmware job needs location and retrieve_at", field="parameters")
    if concurrency < 1 or max_attempts < 1:
        raise CommandError("concurrency and max_attempts are at least 1")
    stations = list(
        job_stations(
            location=location,
            station_model=station_model,
            station_filter=station_filter,
            station_ids=station_ids,
        )
    )
    if not stations:
        raise CommandError("no station matches", field="stations")
    job = Job.objects.create(
        kind=kind,
        name=name[:200],
        parameters=parameters,
        location=location,
        station_model=station_model[:50],
        station_filter=station_filter[:100],
        concurrency=concurrency,
        max_attempts=max_attempts,
        target_timeout=target_timeout,
        created_by=created_by if getattr(created_by, "pk", None) else None,
    )
    JobTarget.objects.bulk_create(JobTarget(job=job, station=s) for s in stations)
    _job_advance_later(job.pk)
    return job


def _job_advance_later(job_id: int) -> None:
    def enqueue() -> None:
        from stations.tasks import job_advance

        job_advance.delay(job_id)

    transaction.on_commit(enqueue)


def _target_params(job: Job, target: JobTarget, station: ChargingStation) -> tuple[str, dict]:
    p = dict(job.parameters)
    request_id = verbs.new_request_id()
    target.request_id = request_id
    if job.kind == Job.Kind.FIRMWARE:
        keys = (
            "location",
            "retrieve_at",
            "install_at",
            "signing_certificate",
            "signature",
            "retries",
            "retry_interval",
        )
        return "update_firmware", {k: p[k] for k in keys if p.get(k) not in (None, "")} | {
            "request_id": request_id
        }
    upload = diagnostics_upload_create(station=station, job_target=target)
    location = upload_url(upload, base_url=p.get("upload_base_url", ""))
    params: dict[str, Any] = {"location": location, "request_id": request_id}
    for key in ("start_time", "stop_time", "retries", "retry_interval"):
        if p.get(key) not in (None, ""):
            params[key] = p[key]
    log_type = p.get("log_type") or "DiagnosticsLog"
    if station.protocol == verbs.V16 and log_type == "DiagnosticsLog":
        params.pop("request_id")
        return "get_diagnostics", params
    return "get_log", params | {"log_type": log_type}


@transaction.atomic
def job_advance(*, job_id: int) -> int:
    """Start pending targets up to the job's concurrency; finish the job when all are done.

    Returns how many targets were started.
    """
    job = Job.objects.select_for_update().get(pk=job_id)
    if job.status != Job.Status.RUNNING:
        return 0
    targets = JobTarget.objects.filter(job=job)
    running = targets.filter(status=JobTarget.Status.RUNNING).count()
    started = 0
    now = timezone.now()
    for target in targets.filter(status=JobTarget.Status.PENDING).select_related("station")[
        : max(0, job.concurrency - running)
    ]:
        verb, params = _target_params(job, target, target.station)
        target.attempts += 1
        try:
            command = command_create(
                station=target.station,
                verb=verb,
                params=params,
                origin=Command.Origin.JOB,
                requested_by=job.created_by,
            )
        except CommandError as error:
            target.status = JobTarget.Status.FAILED
            target.detail = error.message[:255]
            target.finished_at = now
        else:
            target.command = command
            target.status = JobTarget.Status.RUNNING
            target.progress = ""
            target.detail = ""
            target.started_at = now
            started += 1
        target.updated_at = now
        target.save()
    if not targets.exclude(status__in=JobTarget.FINAL).exists():
        job.status = Job.Status.COMPLETED
        job.finished_at = now
        job.save(update_fields=["status", "finished_at"])
    return started


def _target_attempt_failed(target: JobTarget, detail: str) -> None:
    now = timezone.now()
    job = target.job
    target.detail = detail[:255]
    target.updated_at = now
    if target.attempts < job.max_attempts and job.status == Job.Status.RUNNING:
        target.status = JobTarget.Status.PENDING
    else:
        target.status = JobTarget.Status.FAILED
        target.finished_at = now
    target.save()
    _job_advance_later(job.pk)


@transaction.atomic
def job_progress_record(
    *, station_id: int, action: str, status: str, request_id: int | None = None
) -> JobTarget | None:
    """Apply a station's status notification to the job target it belongs to.

    2.0.1 and signed 1.6 notifications carry the request id; plain 1.6 ones do not, and then
    the station's most recently started running target of that kind is meant.
    """
    kind = _JOB_ACTIONS.get(action)
    if kind is None:
        return None
    targets = (
        JobTarget.objects.select_for_update()
        .filter(station_id=station_id, status=JobTarget.Status.RUNNING, job__kind=kind)
        .select_related("job")
    )
    if request_id is not None:
        target = targets.filter(request_id=request_id).first()
    else:
        target = targets.order_by("-started_at", "-pk").first()
    if target is None:
        return None
    now = timezone.now()
    target.progress = status[:50]
    target.updated_at = now
    if status in _SUCCEEDED:
        target.status = JobTarget.Status.SUCCEEDED
        target.finished_at = now
        target.save()
        _job_advance_later(target.job_id)
    elif status in _FAILED:
        target.save()
        _target_attempt_failed(target, f"station reported {status}")
    else:
        target.save()
    return target


@transaction.atomic
def job_cancel(*, job: Job) -> None:
    """Stop a job: pending targets are cancelled, queued commands withdrawn. Stations already
    working on their part finish it on their own."""
    now = timezone.now()
    Job.objects.filter(pk=job.pk).update(status=Job.Status.CANCELLED, finished_at=now)
    pending = JobTarget.objects.filter(
        job=job, status__in=[JobTarget.Status.PENDING, JobTarget.Status.RUNNING]
    )
    Command.objects.filter(job_targets__in=pending, status=Command.Status.QUEUED).update(
        status=Command.Status.EXPIRED, completed_at=now, error_description="job cancelled"
    )
    pending.update(status=JobTarget.Status.CANCELLED, finished_at=now, updated_at=now)


def jobs_check_timeouts(*, now: datetime | None = None) -> int:
    """Fail attempts that exceeded their job's target timeout (the station went silent)."""
    now = now or timezone.now()
    count = 0
    running = JobTarget.objects.filter(
        status=JobTarget.Status.RUNNING, job__status=Job.Status.RUNNING
    ).select_related("job")
    for target in running:
        if target.started_at and now - target.started_at > timedelta(
            seconds=target.job.target_timeout
        ):
            with transaction.atomic():
                locked = (
                    JobTarget.objects.select_for_update().select_related("job").get(pk=target.pk)
                )
                if locked.status == JobTarget.Status.RUNNING:
                    _target_attempt_failed(locked, "no result within the job's timeout")
                    count += 1
    return count


# --- Diagnostics uploads ------------------------------------------------------------------------


def diagnostics_upload_create(
    *,
    station: ChargingStation,
    job_target: JobTarget | None = None,
) -> DiagnosticsUpload:
    return DiagnosticsUpload.objects.create(
        station=station,
        job_target=job_target if job_target and job_target.pk else None,
        token=secrets.token_urlsafe(32),
        max_bytes=settings.OCPP_DIAGNOSTICS_MAX_BYTES,
        expires_at=timezone.now() + timedelta(seconds=settings.OCPP_DIAGNOSTICS_UPLOAD_TTL),
    )


def upload_url(upload: DiagnosticsUpload, *, base_url: str = "") -> str:
    from django.urls import reverse

    base = (base_url or settings.OCPP_UPLOAD_BASE_URL).rstrip("/")
    return base + reverse("diagnostics-upload", kwargs={"token": upload.token})


class UploadRefused(Exception):
    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.message = message
        self.status = status


def diagnostics_upload_open(*, token: str) -> DiagnosticsUpload:
    """The upload a token grants, or UploadRefused (unknown, used or expired)."""
    upload = DiagnosticsUpload.objects.filter(token=token).first()
    if upload is None:
        raise UploadRefused("unknown upload URL", 404)
    if upload.uploaded_at is not None:
        raise UploadRefused("this upload URL was already used", 410)
    if upload.expires_at <= timezone.now():
        raise UploadRefused("this upload URL has expired", 410)
    return upload


@transaction.atomic
def diagnostics_upload_store(*, token: str, filename: str, content: File) -> DiagnosticsUpload:
    """Store the file a station uploaded; the URL is spent afterwards."""
    upload = DiagnosticsUpload.objects.select_for_update().get(
        pk=diagnostics_upload_open(token=token).pk
    )
    if upload.uploaded_at is not None:
        raise UploadRefused("this upload URL was already used", 410)
    if content.size is not None and content.size > upload.max_bytes:
        raise UploadRefused("file too large", 413)
    safe = "".join(c for c in filename if c.isalnum() or c in "._-")[:100] or "diagnostics.bin"
    upload.filename = safe
    upload.file.save(f"{upload.station.identity}-{upload.pk}-{safe}", content, save=False)
    upload.size = upload.file.size
    upload.uploaded_at = timezone.now()
    upload.save()
    return upload


def uploads_for(*, station_id: int) -> QuerySet[DiagnosticsUpload]:
    return DiagnosticsUpload.objects.filter(station_id=station_id).exclude(uploaded_at=None)
