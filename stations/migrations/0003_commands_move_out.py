"""Commands, jobs, uploads and local lists now belong to the `commands` app (its 0001 takes
them over with their tables): they leave this app's state, nothing in the database changes."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("stations", "0002_commands_jobs_local_lists"),
        ("commands", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel("LocalAuthList"),
                migrations.DeleteModel("DiagnosticsUpload"),
                migrations.DeleteModel("JobTarget"),
                migrations.DeleteModel("Job"),
                migrations.DeleteModel("Command"),
            ],
        ),
    ]
