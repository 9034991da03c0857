"""Tariff versions: every published state of a tariff, immutable, and the version each session
is priced with.

Data: each tariff's current state becomes its version in force from now. Each distinct
snapshot frozen on past sessions becomes an earlier version of its tariff (effective from the
first session that used it, "recovered"), and those sessions point to it, so no session's
price changes.
"""

import json

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


def _num(value):
    return None if value is None else format(value.normalize(), "f")


def _ocpi(tariff):
    """Tariff.to_ocpi() of tariffs 0001's schema, on historical models."""
    elements = []
    for element in tariff.elements.order_by("position", "id"):
        components = []
        for pc in element.price_components.order_by("id"):
            component = {"type": pc.type, "price": _num(pc.price), "step_size": pc.step_size}
            if pc.vat is not None:
                component["vat"] = _num(pc.vat)
            components.append(component)
        restrictions = {}
        if element.start_time is not None:
            restrictions["start_time"] = element.start_time.strftime("%H:%M")
        if element.end_time is not None:
            restrictions["end_time"] = element.end_time.strftime("%H:%M")
        if element.start_date is not None:
            restrictions["start_date"] = element.start_date.isoformat()
        if element.end_date is not None:
            restrictions["end_date"] = element.end_date.isoformat()
        for name in ("min_kwh", "max_kwh", "min_current", "max_current", "min_power", "max_power"):
            if getattr(element, name) is not None:
                restrictions[name] = _num(getattr(element, name))
        for name in ("min_duration", "max_duration"):
            if getattr(element, name) is not None:
                restrictions[name] = getattr(element, name)
        if element.day_of_week:
            restrictions["day_of_week"] = list(element.day_of_week)
        if element.reservation:
            restrictions["reservation"] = element.reservation
        item = {"price_components": components}
        if restrictions:
            item["restrictions"] = restrictions
        elements.append(item)
    data = {"id": tariff.tariff_id, "currency": tariff.currency, "elements": elements}
    if tariff.type:
        data["type"] = tariff.type
    if tariff.display_text:
        data["tariff_alt_text"] = [{"language": "en", "text": tariff.display_text}]
    for bound in ("min", "max"):
        excl = getattr(tariff, f"{bound}_price_excl_vat")
        incl = getattr(tariff, f"{bound}_price_incl_vat")
        if excl is not None:
            data[f"{bound}_price"] = {"excl_vat": _num(excl)}
            if incl is not None:
                data[f"{bound}_price"]["incl_vat"] = _num(incl)
    if tariff.start_date_time:
        data["start_date_time"] = tariff.start_date_time.isoformat()
    if tariff.end_date_time:
        data["end_date_time"] = tariff.end_date_time.isoformat()
    data["last_updated"] = tariff.updated_at.isoformat() if tariff.updated_at else None
    return data


def _without_stamp(ocpi):
    return {k: v for k, v in ocpi.items() if k != "last_updated"}


def _parse(value):
    from django.utils.dateparse import parse_datetime

    return parse_datetime(value) if value else None


def to_versions(apps, schema_editor):
    from django.utils import timezone

    tariff_model = apps.get_model("tariffs", "Tariff")
    version_model = apps.get_model("tariffs", "TariffVersion")
    link_model = apps.get_model("tariffs", "SessionTariff")
    session_model = apps.get_model("charging", "ChargingSession")
    now = timezone.now()
    for tariff in tariff_model.objects.order_by("pk"):
        current = _ocpi(tariff)
        recovered = {}  # snapshot (without stamp, as JSON text) -> (snapshot, first start, ids)
        sessions = (
            session_model.objects.filter(tariff_ref=tariff.tariff_id, tariff_snapshot__isnull=False)
            .order_by("started_at")
            .values_list("pk", "started_at", "tariff_snapshot")
        )
        for session_id, started_at, snapshot in sessions.iterator():
            key = json.dumps(_without_stamp(snapshot), sort_keys=True)
            entry = recovered.setdefault(key, [snapshot, started_at, []])
            entry[2].append(session_id)
        number = 0
        for snapshot, first_start, session_ids in sorted(recovered.values(), key=lambda e: e[1]):
            number += 1
            version = version_model.objects.create(
                tariff=tariff,
                number=number,
                ocpi=snapshot,
                effective_from=min(first_start, now),
                currency=snapshot.get("currency") or tariff.currency,
                type=snapshot.get("type") or "",
                start_date_time=_parse(snapshot.get("start_date_time")),
                end_date_time=_parse(snapshot.get("end_date_time")),
                changes="recovered from the sessions priced with it",
                created_at=now,
            )
            link_model.objects.bulk_create(
                link_model(session_id=pk, version=version, chosen_at=now) for pk in session_ids
            )
        version_model.objects.create(
            tariff=tariff,
            number=number + 1,
            ocpi=current,
            effective_from=now,
            currency=tariff.currency,
            type=tariff.type,
            start_date_time=tariff.start_date_time,
            end_date_time=tariff.end_date_time,
            changes="the tariff as it stood when versions were introduced",
            created_at=now,
        )


class Migration(migrations.Migration):

    dependencies = [
        ("tariffs", "0002_ocpp16_connector_address"),
        ("charging", "0006_live_cost_currency"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="TariffVersion",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("number", models.PositiveIntegerField()),
                ("ocpi", models.JSONField(help_text="The tariff as published (OCPI 2.2.1).")),
                ("effective_from", models.DateTimeField(help_text="Applies to sessions that start from then.")),
                ("currency", models.CharField(max_length=3)),
                ("type", models.CharField(blank=True, max_length=16)),
                ("start_date_time", models.DateTimeField(blank=True, null=True)),
                ("end_date_time", models.DateTimeField(blank=True, null=True)),
                ("changes", models.TextField(blank=True, help_text="What changed against the version before.")),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("created_by", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to=settings.AUTH_USER_MODEL)),
                ("tariff", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="versions", to="tariffs.tariff")),
            ],
            options={
                "ordering": ["tariff", "-number"],
                "constraints": [models.UniqueConstraint(fields=("tariff", "number"), name="tariff_version_unique")],
                "indexes": [models.Index(fields=["tariff", "effective_from"], name="tariff_version_effective_idx")],
            },
        ),
        migrations.CreateModel(
            name="SessionTariff",
            fields=[
                ("session", models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name="tariff", serialize=False, to="charging.chargingsession")),
                ("chosen_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("assigned_by", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to=settings.AUTH_USER_MODEL)),
                ("version", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="+", to="tariffs.tariffversion")),
            ],
        ),
        migrations.RunPython(to_versions, migrations.RunPython.noop),
    ]
