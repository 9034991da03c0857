"""The memory of idle OCPP connections in a real daphne (cpo.tools.connection_memory): 300
simulated stations (1.6 and 2.0.1) connect, boot, report their connectors and idle.

Guards: daphne's resident set grows by less than KIB_BOUND per connection (measured 50 KiB
on PostgreSQL and 60 KiB on the embedded SQLite, on the 2-core box: the bound catches a gross
regression, with room for the spread of RSS), and the Redis connections of the process do
not grow with the stations (it held one per station before: cpo/lib/redis_cache.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection

from cpo.tools.connection_memory import measure, stations_prepare
from cpo.tools.simulator import raise_open_files_limit
from tests.conftest import server_env

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

STATIONS = 300
KIB_BOUND = 80
# Redis connections daphne may open beside its first ones (channel layer pools, polls).
REDIS_CLIENTS_MORE = 40


def redis_clients() -> int:
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        clients: list[dict[str, str]] = client.client_list()  # type: ignore[assignment]  # sync client
        return len(clients)
    finally:
        client.close()


def test_idle_connections_cost_daphne_bounded_memory_and_no_redis_connection_each():
    raise_open_files_limit()
    stations_prepare(STATIONS)
    connection.close()
    measured, _ = measure(
        stations=STATIONS,
        env=server_env(LOG_LEVEL="WARNING"),
        work_dir=Path(settings.DATA_DIR),
        probe=redis_clients,
    )
    print(measured.to_dict(), "redis clients before/after:", measured.probed)  # noqa: T201
    assert measured.online == STATIONS
    assert measured.kib_per_connection < KIB_BOUND
    before, after = measured.probed
    assert after - before < REDIS_CLIENTS_MORE
