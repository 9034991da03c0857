"""Meter samples partitioned by month on PostgreSQL (cpo.lib.partitions); SQLite unchanged."""

from django.db import migrations


def partition(apps, schema_editor):
    from cpo.lib.partitions import partitioned_table_convert

    partitioned_table_convert(
        schema_editor.connection, table="charging_metersample", column="timestamp"
    )


class Migration(migrations.Migration):
    dependencies = [("charging", "0017_token_import")]

    # Going back leaves the table partitioned: the model reads and writes it the same way.
    operations = [migrations.RunPython(partition, migrations.RunPython.noop)]
