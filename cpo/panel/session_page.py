"""The charging session's page: what the session was, what it cost, and what it became.

Composition only, like the station page: sessions' selectors (curve, samples, decisions),
tariffs' (the version it was priced with, in words), billing's (its CDRs, the cost breakdown
of the one that counts, the invoice line). Times are in the site's zone, named on the page;
money always carries its currency.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import reverse

from billing import selectors as billing
from cpo.lib.formatting import admin_url, money_text, zone_label, zone_or_panel
from sessions import selectors as charging
from sessions.models import ChargingSession
from stations.commands import permissions as command_permissions
from stations.energy import selectors as energy
from stations.energy.models import EnergySite
from tariffs import selectors as pricing


def session_page(*, session: ChargingSession, user: Any) -> dict[str, Any]:
    session = ChargingSession.objects.select_related(
        "station__location", "id_token__driver", "account"
    ).get(pk=session.pk)
    station = session.station
    tz = zone_or_panel(station.location.time_zone if station.location else None)
    version = pricing.session_tariff_version(session=session)
    cdrs = billing.session_cdrs(session=session)
    live_cdr = billing.session_live_cdr(cdrs=cdrs)
    token = session.id_token
    driver = token.driver if token is not None and token.driver_id else None
    active = session.status == ChargingSession.Status.ACTIVE
    can_stop = (
        active
        and bool(station.protocol)
        and bool(session.transaction_id)
        and command_permissions.can_send(user, "remote_stop")
    )
    can_credit = live_cdr is not None and user.has_perm("billing.credit_cdr")
    why = (
        energy.session_energy(session_id=session.pk)
        if user.has_perm("energy.view_sessionallocation")
        else None
    )
    energy_site = (
        EnergySite.objects.filter(location_id=station.location_id or 0)
        .values_list("pk", flat=True)
        .first()
        if why is not None
        else None
    )
    return {
        "energy": why,
        "energy_url": reverse("panel:energy-site", args=[energy_site]) if energy_site else "",
        "session": session,
        "tz": tz,
        "zone_label": zone_label(tz, at=session.started_at),
        "active": active,
        "refresh_ms": settings.PANEL_REFRESH_SECONDS * 1000,
        "station_url": admin_url("stations_chargingstation_change", station.pk),
        "token_url": admin_url("charging_idtoken_change", token.pk) if token else "",
        "driver": driver,
        "driver_url": admin_url("charging_driver_change", driver.pk) if driver else "",
        "account_url": admin_url("charging_customeraccount_change", session.account_id)
        if session.account_id
        else "",
        "live_cost": money_text(session.live_cost, session.live_cost_currency)
        if session.live_cost is not None
        else "",
        "curve_url": reverse("panel:session-curve", args=[session.pk]),
        "tariff": pricing.tariff_version_text(version=version) if version is not None else None,
        "tariff_url": admin_url("tariffs_tariff_change", version.tariff_id) if version else "",
        "decisions": charging.session_decisions(session=session),
        "samples": charging.session_samples(session=session),
        "samples_url": admin_url("charging_metersample_changelist")
        and f"{admin_url('charging_metersample_changelist')}?session__id__exact={session.pk}",
        "cdrs": [
            {
                "cdr": cdr,
                "url": admin_url("billing_cdr_change", cdr.pk),
                "total": money_text(cdr.total_cost_incl_vat, cdr.currency),
                "line": getattr(cdr, "invoice_line", None),
                "invoice_url": admin_url("billing_invoice_change", cdr.invoice_line.invoice_id)
                if hasattr(cdr, "invoice_line")
                else "",
            }
            for cdr in cdrs
        ],
        "live_cdr": live_cdr,
        "breakdown": billing.cdr_cost_breakdown(cdr=live_cdr, tz=tz) if live_cdr else None,
        "can_stop": can_stop,
        "can_credit": can_credit,
        "urls": {
            "command": reverse("panel:station-command", args=[station.pk]),
            "credit": reverse("panel:session-credit", args=[session.pk]),
        },
    }
