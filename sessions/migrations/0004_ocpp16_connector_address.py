"""OCPP 1.6 sessions and meter samples on connector N were stored as (EVSE N, connector N),
while status reports and the network's connectors say (EVSE N, connector 1). One address now:
rows written the other way move to (EVSE N, connector 1)."""

from django.db import migrations
from django.db.models import F


def to_evse_address(apps, schema_editor):
    station_model = apps.get_model("stations", "ChargingStation")
    session_model = apps.get_model("charging", "ChargingSession")
    sample_model = apps.get_model("charging", "MeterSample")
    stations = station_model.objects.filter(protocol="ocpp1.6").values_list("pk", flat=True)
    for station_id in stations.iterator():
        session_model.objects.filter(
            station_id=station_id, evse_id__gt=1, connector_id=F("evse_id")
        ).update(connector_id=1)
        samples = sample_model.objects.filter(
            station_id=station_id, evse_id__gt=1, connector_id=F("evse_id")
        )
        # A sample already stored at the new address is the same reading: keep one.
        fields = ("pk", "evse_id", "timestamp", "measurand", "phase", "location", "context")
        for row in samples.values(*fields).iterator():
            twin = sample_model.objects.filter(
                station_id=station_id,
                evse_id=row["evse_id"],
                connector_id=1,
                timestamp=row["timestamp"],
                measurand=row["measurand"],
                phase=row["phase"],
                location=row["location"],
                context=row["context"],
            )
            if twin.exists():
                sample_model.objects.filter(pk=row["pk"]).delete()
        samples.update(connector_id=1)


class Migration(migrations.Migration):

    dependencies = [
        ("charging", "0003_authorization_context_stop"),
        ("stations", "0003_commands_move_out"),
    ]

    operations = [migrations.RunPython(to_evse_address, migrations.RunPython.noop)]
