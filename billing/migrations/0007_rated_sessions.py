"""Sessions already rated into a CDR say so (charging 0008 added the rating status)."""

from django.db import migrations


def mark_rated(apps, schema_editor):
    session_model = apps.get_model("charging", "ChargingSession")
    cdr_model = apps.get_model("billing", "Cdr")
    rated = cdr_model.objects.values("session_id")
    session_model.objects.filter(pk__in=rated).update(rating_status="rated")


class Migration(migrations.Migration):

    dependencies = [
        ("billing", "0006_cdr_tariff_version"),
        ("charging", "0008_rating_status"),
    ]

    operations = [migrations.RunPython(mark_rated, migrations.RunPython.noop)]
