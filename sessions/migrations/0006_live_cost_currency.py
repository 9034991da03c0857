from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [("charging", "0005_customeraccount_time_zone")]

    operations = [
        migrations.AddField(
            model_name="chargingsession",
            name="live_cost_currency",
            field=models.CharField(blank=True, max_length=3),
        ),
    ]
