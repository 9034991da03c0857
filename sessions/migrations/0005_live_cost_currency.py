from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [("charging", "0004_ocpp16_connector_address")]

    operations = [
        migrations.AddField(
            model_name="chargingsession",
            name="live_cost_currency",
            field=models.CharField(blank=True, max_length=3),
        ),
    ]
