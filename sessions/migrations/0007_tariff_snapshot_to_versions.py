"""The tariff a session is priced with is a version of the tariffs app now (tariffs 0003 moved
every frozen snapshot into a version and linked the session to it): the copies go."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("charging", "0006_live_cost_currency"),
        ("tariffs", "0003_tariff_versions"),
    ]

    operations = [
        migrations.RemoveField(model_name="chargingsession", name="tariff_ref"),
        migrations.RemoveField(model_name="chargingsession", name="tariff_snapshot"),
    ]
