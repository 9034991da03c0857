"""/healthz reports each dependency."""

from __future__ import annotations

import pytest


@pytest.mark.live
def test_healthz_reports_each_dependency(client, celery_worker):
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["database"]["ok"]
    assert body["redis"]["ok"]
    assert body["celery"]["ok"]

    celery_worker.stop()
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["celery"]["ok"] is False
