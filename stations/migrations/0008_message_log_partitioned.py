"""The OCPP message log partitioned by month on PostgreSQL (cpo.lib.partitions)."""

from django.db import migrations


def partition(apps, schema_editor):
    from cpo.lib.partitions import partitioned_table_convert

    partitioned_table_convert(
        schema_editor.connection, table="stations_ocppmessage", column="created_at"
    )


class Migration(migrations.Migration):
    dependencies = [("stations", "0007_auth_lockout")]

    # Going back leaves the table partitioned: the model reads and writes it the same way.
    operations = [migrations.RunPython(partition, migrations.RunPython.noop)]
