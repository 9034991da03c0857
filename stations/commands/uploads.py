"""One-time upload URLs given to stations for diagnostics and log files, and the uploads."""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.core.files.base import File
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from stations.commands.models import DiagnosticsUpload, JobTarget
from stations.models import ChargingStation


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
