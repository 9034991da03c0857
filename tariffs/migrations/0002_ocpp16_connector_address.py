"""Assignments to "connector N" of an OCPP 1.6 station were entered as (EVSE N, connector N)
to match how its sessions were stored; both now say (EVSE N, connector 1)."""

from django.db import migrations
from django.db.models import F


def to_evse_address(apps, schema_editor):
    assignment_model = apps.get_model("tariffs", "TariffAssignment")
    assignment_model.objects.filter(
        station__protocol="ocpp1.6", evse_id__gt=1, connector_id=F("evse_id")
    ).update(connector_id=1)


class Migration(migrations.Migration):

    dependencies = [
        ("tariffs", "0001_initial"),
        ("charging", "0004_ocpp16_connector_address"),
    ]

    operations = [migrations.RunPython(to_evse_address, migrations.RunPython.noop)]
