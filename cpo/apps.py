from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.utils.translation import gettext_lazy as _


class CpoConfig(AppConfig):
    name = "cpo"
    verbose_name = _("Back office")

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from cpo.roles import roles_sync_on_migrate

        post_migrate.connect(roles_sync_on_migrate, dispatch_uid="cpo.roles_sync")


@register()
def check_time_zone(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    if settings.TIME_ZONE != "UTC":
        return [
            Error(
                f"TIME_ZONE is {settings.TIME_ZONE!r}; it must be 'UTC'.",
                hint="Everything is stored in UTC; tariffs use each site's own time zone.",
                id="cpo.E001",
            )
        ]
    return []


@register()
def check_seller_country(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    from cpo.lib.countries import ALPHA_2

    country = settings.BILLING_SELLER.get("country", "")
    if country not in ALPHA_2:
        return [
            Error(
                f"BILLING_SELLER_COUNTRY is {country!r}, not an ISO 3166-1 alpha-2 code.",
                hint="The seller's country on invoices, e.g. NL.",
                id="cpo.E002",
            )
        ]
    return []


@register(deploy=True)
def check_production_secrets(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    warnings: list[CheckMessage] = []
    if settings.DEBUG:
        warnings.append(Warning("DEBUG is on.", id="cpo.W001"))
    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        warnings.append(
            Warning(
                "DATABASE_URL is not a PostgreSQL URL; SQLite is for one small node.", id="cpo.W002"
            )
        )
    return warnings
