"""Jobs: diagnostics / log collection and firmware rollouts over many stations.

A job has a target per station; at most `concurrency` targets run at once. Each attempt is a
command of the queue; the station's status notifications (diagnostics, log, firmware) move
its target on, and a failed attempt is retried up to `max_attempts`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from stations import services as network
from stations.commands import uploads, verbs
from stations.commands.models import Command, Job, JobTarget
from stations.commands.services import command_create
from stations.commands.signals import job_targets_changed
from stations.commands.verbs import CommandError
from stations.models import ChargingStation, Location

JOB_PROGRESS_ACTIONS = {
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
    # A Celery worker starts the next targets (stations.commands.receivers).
    job_targets_changed.send(sender=Job, job_id=job_id)


def _target_params(
    job: Job, target: JobTarget, station: ChargingStation
) -> tuple[str, dict[str, Any]]:
    """The verb and parameters of one station's attempt."""
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
    upload = uploads.diagnostics_upload_create(station=station, job_target=target)
    location = uploads.upload_url(upload, base_url=p.get("upload_base_url", ""))
    params: dict[str, Any] = {"location": location, "request_id": request_id}
    for key in ("start_time", "stop_time", "retries", "retry_interval"):
        if p.get(key) not in (None, ""):
            params[key] = p[key]
    log_type = p.get("log_type") or "DiagnosticsLog"
    if log_type == "DiagnosticsLog":
        # A station without request ids in its diagnostics notifications (1.6 GetDiagnostics)
        # is matched by its running target instead (job_progress_record).
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
    kind = JOB_PROGRESS_ACTIONS.get(action)
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
        status=Command.Status.EXPIRED,
        completed_at=now,
        error_description="job cancelled",
        sealed="",
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


def job_command_finished(*, command: Command) -> None:
    """A job's command ended: an attempt that was not accepted failed."""
    target = JobTarget.objects.filter(command=command, status=JobTarget.Status.RUNNING).first()
    if target is not None and command.status != Command.Status.ACCEPTED:
        _target_attempt_failed(
            target,
            f"{command.action} {command.get_status_display()}: "
            f"{command.error_description or command.result}",
        )


@transaction.atomic
def job_notification_record(
    *,
    station_id: int,
    action: str,
    payload: dict[str, Any],
    status: str = "",
    request_id: int | None = None,
) -> JobTarget | None:
    """Store a diagnostics, log or firmware status notification and apply it to the job
    target it belongs to, if any, in one transaction."""
    network.notification_record(
        station_id=station_id, action=action, payload=payload, status=status, request_id=request_id
    )
    return job_progress_record(
        station_id=station_id, action=action, status=status, request_id=request_id
    )
