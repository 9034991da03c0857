from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core.checks import Error, register
from django.utils.translation import gettext_lazy as _


def _enqueue_cdr(sender: Any, session_id: int, **kwargs: Any) -> None:
    from django.db import transaction

    from billing.tasks import cdr_create_for_session

    # After commit: the worker must see the ended session, and a rolled-back end rates nothing.
    transaction.on_commit(lambda: cdr_create_for_session.delay(session_id))


@register()
def check_billing_time_zone(app_configs: Any, **kwargs: Any) -> list[Error]:
    import zoneinfo

    from django.conf import settings

    try:
        zoneinfo.ZoneInfo(settings.BILLING_TIME_ZONE)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return [
            Error(
                f"BILLING_TIME_ZONE={settings.BILLING_TIME_ZONE!r} is not an IANA time zone.",
                hint="e.g. Europe/Amsterdam: billing periods and invoice dates are counted in it.",
                id="billing.E001",
            )
        ]
    return []


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = _("Billing")

    def ready(self) -> None:
        from sessions.signals import session_ended

        session_ended.connect(_enqueue_cdr, dispatch_uid="billing.cdr_on_session_end")
