"""The ASGI server's process: database connections bounded, whatever HTTP sends it."""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from tests.conftest import start_daphne

POOL_MAX = 4


def _backends(application_name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = %s",
            [application_name],
        )
        return cursor.fetchone()[0]


def _get(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url)  # noqa: S310 - loopback only
    if token is not None:
        request.add_header("Authorization", f"Token {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_http_requests_leave_no_database_connection_behind(roles):
    """Under daphne each request runs on a thread of its own: with persistent connections 200
    GETs left 51-83 connections open, and bad API tokens alone could exhaust max_connections.
    The ASGI process's pool keeps them at DB_POOL_MAX_SIZE, however many requests come."""
    if connection.vendor != "postgresql":
        pytest.skip("pg_stat_activity: PostgreSQL only")
    from django.contrib.auth.models import Group
    from rest_framework.authtoken.models import Token

    from cpo.models import User

    user = User.objects.create_user(username="integrator", is_staff=True)
    user.groups.set([Group.objects.get(name="Support")])
    token = Token.objects.create(user=user).key
    # libpq names the server's connections, so that only they are counted.
    name = f"asgi-pool-{uuid.uuid4().hex[:8]}"
    # The bad tokens are the point here (each one costs a query), not their throttle.
    server = start_daphne(
        "pool-test",
        PGAPPNAME=name,
        DB_POOL_MAX_SIZE=str(POOL_MAX),
        API_TOKEN_FAILURES="1000/min",
    )
    requests = (
        [(f"{server.http_url}/api/tokens/", f"bad-token-{i}", 401) for i in range(100)]
        + [(f"{server.http_url}/api/tokens/", token, 200) for _ in range(60)]
        + [(f"{server.http_url}/api/sessions/?limit=5", token, 200) for _ in range(20)]
        + [(f"{server.http_url}/admin/login/", None, 200) for _ in range(20)]
    )
    seen: list[int] = []
    try:
        with ThreadPoolExecutor(max_workers=10) as pool:
            for start in range(0, len(requests), 20):
                batch = requests[start : start + 20]
                statuses = list(pool.map(lambda r: _get(r[0], r[1]), batch))
                assert statuses == [r[2] for r in batch], server.log.read_text()[-3000:]
                seen.append(_backends(name))
    finally:
        server.stop()
    assert 1 <= max(seen) <= POOL_MAX, seen
