"""Create the staff roles Operators, Finance and Support.

Their permissions are (re)assigned after every migrate by cpo.roles.roles_sync_on_migrate,
because the permissions of models added later do not exist yet when this migration runs.
"""

from django.db import migrations


def create_roles(apps, schema_editor):
    from cpo.roles import roles_sync

    roles_sync(group_model=apps.get_model("auth", "Group"),
               permission_model=apps.get_model("auth", "Permission"))


def delete_roles(apps, schema_editor):
    from cpo.roles import ROLES

    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("cpo", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, delete_roles)]
