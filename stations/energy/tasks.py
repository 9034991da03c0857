"""Celery tasks of energy management: thin wrappers that load ids and call services."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="stations.energy.tasks.site_allocate")  # triggers.SITE_ALLOCATE_TASK
def site_allocate(site_id: int, trigger: str = "task") -> int | None:
    """One allocation run of a site (debounced by `triggers.site_allocate_soon`)."""
    from stations.energy import triggers
    from stations.energy.services import site_allocate as allocate

    triggers.site_allocate_started(site_id)
    run = allocate(site_id=site_id, trigger=trigger)
    return run.pk if run is not None else None


@shared_task
def energy_pass() -> int:
    """Beat: reallocate every managed site (stale limits fall to their fail-safe, profiles are
    refreshed before their dead-man time)."""
    from stations.energy import triggers
    from stations.energy.models import EnergySite

    count = 0
    for site_id in EnergySite.objects.filter(enabled=True).values_list("pk", flat=True):
        count += triggers.site_allocate_soon(site_id, "periodic")
    return count
