"""The queue's tables take this app's names, and a command keeps the station's answer in one
version-neutral word (`result`), read by the OCPP edge."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("commands", "0001_initial"),
        ("stations", "0003_commands_move_out"),
    ]

    operations = [
        migrations.AlterModelTable(name="command", table=None),
        migrations.AlterModelTable(name="job", table=None),
        migrations.AlterModelTable(name="jobtarget", table=None),
        migrations.AlterModelTable(name="diagnosticsupload", table=None),
        migrations.AlterModelTable(name="localauthlist", table=None),
        migrations.AddField(
            model_name="command",
            name="result",
            field=models.CharField(blank=True, max_length=40),
        ),
    ]
