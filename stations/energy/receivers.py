"""Receivers of the facts energy management listens to, connected in EnergyConfig.ready().

They hold no logic: they look the station up in the cached map of managed stations and
schedule a debounced run after the announcing transaction commits.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from stations.energy import triggers


def session_changed(sender: Any, session_id: int, **kwargs: Any) -> None:
    """A session started or ended: its site (if managed) needs a new allocation."""
    from sessions.models import ChargingSession

    station_id = kwargs.get("station_id")
    if station_id is None:
        station_id = (
            ChargingSession.objects.filter(pk=session_id)
            .values_list("station_id", flat=True)
            .first()
        )
    if station_id is None or station_id not in triggers.managed_sites():
        return
    transaction.on_commit(lambda: triggers.station_event(station_id, "session"))


def energy_changed_receiver(
    sender: Any, site_id: int, reason: str, countdown: float | None = None, **kwargs: Any
) -> None:
    triggers.forget()

    def schedule() -> None:
        if countdown is not None:
            triggers.site_timer(site_id, countdown)
        else:
            triggers.site_allocate_soon(site_id, reason)

    transaction.on_commit(schedule)


def command_finished_receiver(
    sender: Any, command_id: int, verb: str, status: str, result: str = "", **kwargs: Any
) -> None:
    """A profile command is final: record it, release the increases that waited for it."""
    if verb != "set_charging_profile":
        return
    from stations.energy.dispatch import profile_dispatch_answered
    from stations.energy.models import ProfileDispatch

    again = profile_dispatch_answered(
        command_id=command_id, status=status, result=result, error_code=kwargs.get("error_code", "")
    )
    if again:
        site_id = (
            ProfileDispatch.objects.filter(command_id=command_id)
            .values_list("site_id", flat=True)
            .first()
        )
        if site_id is not None:
            transaction.on_commit(lambda: triggers.site_allocate_soon(site_id, "refused"))
