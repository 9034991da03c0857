"""Plain HTTP endpoints for stations: the one-time diagnostics / log upload URL.

Stations upload with HTTP POST (multipart/form-data, or the raw file as the body) or PUT.
1.6 GetDiagnostics gives a directory, so a file name appended to the URL is accepted too.
"""

from __future__ import annotations

import tempfile
from typing import TYPE_CHECKING, cast

from django.core.files import File
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from stations.commands import uploads
from stations.commands.uploads import UploadRefused

if TYPE_CHECKING:
    from django.core.files.uploadedfile import UploadedFile

CHUNK = 64 * 1024


@csrf_exempt
@require_http_methods(["POST", "PUT"])
def diagnostics_upload(request: HttpRequest, token: str, filename: str = "") -> HttpResponse:
    try:
        upload = uploads.diagnostics_upload_open(token=token)
        length = int(request.headers.get("Content-Length") or 0)
        if length > upload.max_bytes + 64 * 1024:  # room for the multipart envelope
            raise UploadRefused("file too large", 413)
        content_type = request.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            if not request.FILES:
                raise UploadRefused("no file in the form", 400)
            received = cast("UploadedFile", next(iter(request.FILES.values())))
            stored = uploads.diagnostics_upload_store(
                token=token, filename=filename or received.name or "", content=received
            )
        else:
            with tempfile.TemporaryFile() as spool:
                size = 0
                while chunk := request.read(CHUNK):
                    size += len(chunk)
                    if size > upload.max_bytes:
                        raise UploadRefused("file too large", 413)
                    spool.write(chunk)
                spool.seek(0)
                stored = uploads.diagnostics_upload_store(
                    token=token, filename=filename, content=File(spool, name=filename)
                )
    except UploadRefused as refused:
        return HttpResponse(refused.message, status=refused.status, content_type="text/plain")
    return HttpResponse(f"stored {stored.size} bytes\n", status=201, content_type="text/plain")
