"""Read-only date-times of an admin page in the panel's one format and the object's zone.

The station and session pages show their own sections in the site's zone ("2026-12-01 14:03
CET"); the admin's field dump below them would otherwise print the same moments in Django's
format and in UTC. A ModelAdmin with this mixin shows each read-only DateTimeField of its
fieldsets as `<name>__local`: the same value, in `object_time_zone(obj)`, zone abbreviated,
with the full name on hover.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from typing import Any

from django.db import models
from django.http import HttpRequest
from django.utils.html import format_html

from cpo.lib.formatting import local_text, panel_tz

LOCAL = "__local"


class LocalTimesMixin:
    model: type[models.Model]

    def object_time_zone(self, obj: Any) -> zoneinfo.ZoneInfo:
        return panel_tz()

    def _datetime_names(self) -> set[str]:
        return {f.name for f in self.model._meta.fields if isinstance(f, models.DateTimeField)}

    def _local_fieldsets(self, fieldsets: Any, readonly: set[str]) -> list[Any]:
        names = self._datetime_names() & readonly
        return [
            (title, {**options, "fields": [self._swap(f, names) for f in options["fields"]]})
            for title, options in fieldsets
        ]

    @staticmethod
    def _swap(field: Any, names: set[str]) -> Any:
        if isinstance(field, (list, tuple)):
            return type(field)(f"{f}{LOCAL}" if f in names else f for f in field)
        return f"{field}{LOCAL}" if field in names else field

    def local_readonly(self, request: HttpRequest, obj: Any, readonly: Any) -> list[str]:
        """The read-only names plus their `__local` twins (so the form never asks for them)."""
        readonly = list(readonly)
        return readonly + [f"{name}{LOCAL}" for name in self._datetime_names()]

    def __getattr__(self, name: str) -> Callable[[Any], str]:
        if not name.endswith(LOCAL):
            raise AttributeError(name)
        field_name = name[: -len(LOCAL)]
        field = self.model._meta.get_field(field_name)
        if not isinstance(field, models.DateTimeField):
            raise AttributeError(name)

        def show(obj: Any) -> str:
            moment = getattr(obj, field_name)
            if moment is None:
                return "—"
            tz = self.object_time_zone(obj)
            return format_html(
                '<time datetime="{}" title="{}">{}</time>',
                moment.isoformat(),
                local_text(moment, tz, seconds=True, named=True),
                local_text(moment, tz, seconds=True),
            )

        show.short_description = field.verbose_name  # type: ignore[attr-defined]
        return show
