"""/healthz: is the database, Redis and at least one Celery worker reachable? And the OCPP
edge's load in this process (cpo.lib.load)."""

from __future__ import annotations

import time

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from cpo.lib.load import LOAD


def _check_database() -> dict[str, object]:
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "down"
        return {"ok": False, "error": str(exc)}
    return {
        "ok": True,
        "vendor": connection.vendor,
        "ms": round((time.monotonic() - started) * 1000, 1),
    }


def _check_redis() -> dict[str, object]:
    started = time.monotonic()
    try:
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2
        )
        client.ping()
        client.close()
    except Exception as exc:  # connection refused, timeout, bad socket path
        return {"ok": False, "error": str(exc)}
    return {
        "ok": True,
        "embedded": settings.EMBEDDED_REDIS,
        "ms": round((time.monotonic() - started) * 1000, 1),
    }


def _check_celery() -> dict[str, object]:
    from cpo.celery import app

    try:
        replies = app.control.ping(timeout=1.0)
    except Exception as exc:  # broker unreachable
        return {"ok": False, "error": str(exc)}
    workers = sorted(name for reply in replies or [] for name in reply)
    return {"ok": bool(workers), "workers": workers}


def _ocpp_load() -> dict[str, int]:
    return {
        "database_calls_in_flight": LOAD.in_flight,
        "boot_pending_threshold": settings.OCPP_BOOT_PENDING_BACKLOG,
        "boots_deferred": LOAD.boots_deferred,
    }


def healthz(request: HttpRequest) -> JsonResponse:
    checks = {
        "database": _check_database(),
        "redis": _check_redis(),
        "celery": _check_celery(),
    }
    healthy = all(check["ok"] for check in checks.values())
    # Not a check: this process's OCPP load, and how many boots it answered Pending for it.
    return JsonResponse(
        {"ok": healthy, **checks, "ocpp": _ocpp_load()}, status=200 if healthy else 503
    )
