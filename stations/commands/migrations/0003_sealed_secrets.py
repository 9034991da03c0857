"""Secret values masked in what is already stored (stations.secret_keys): command payloads and
answers, logged frames, device-model variables and events. A command still waiting keeps its
clear payload sealed, as new ones do."""

from django.db import migrations, models
from django.db.models import Q

# Only these actions carry configuration values; one-time upload URLs ride on these.
CONFIGURATION_ACTIONS = ("ChangeConfiguration", "GetConfiguration", "SetVariables", "GetVariables")
UPLOAD_ACTIONS = ("GetDiagnostics", "GetLog")
BATCH = 500


def mask_stored(apps, schema_editor):
    from cpo.lib import sealing
    from stations import secret_keys

    Command = apps.get_model("commands", "Command")
    commands = Command.objects.filter(action__in=CONFIGURATION_ACTIONS + UPLOAD_ACTIONS)
    for command in commands.iterator(chunk_size=BATCH):
        payload = secret_keys.mask(command.payload)
        response = secret_keys.mask(command.response)
        if payload is command.payload and response is command.response:
            continue
        if payload is not command.payload and command.status in ("queued", "sent"):
            command.sealed = sealing.seal(command.payload)
        command.payload, command.response = payload, response
        command.save(update_fields=["payload", "response", "sealed"])

    OcppMessage = apps.get_model("stations", "OcppMessage")
    mentions = Q(frame__icontains="uploads/diagnostics/")
    for key in secret_keys.SECRET_KEYS:
        mentions |= Q(frame__icontains=key.rsplit(".", 1)[-1])
    for message in OcppMessage.objects.filter(mentions).iterator(chunk_size=BATCH):
        frame = secret_keys.mask_frame(message.frame)
        if frame != message.frame:
            OcppMessage.objects.filter(pk=message.pk).update(frame=frame)

    for model, field in (("DeviceModelVariable", "value"), ("StationEvent", "actual_value")):
        rows = apps.get_model("stations", model).objects
        for key in secret_keys.SECRET_KEYS:
            if "." not in key:
                continue
            component, variable = key.split(".", 1)
            for row in rows.filter(
                component__iexact=component, variable__iexact=variable
            ).iterator(chunk_size=BATCH):
                masked = secret_keys.mask_value(getattr(row, field))
                if masked != getattr(row, field):
                    rows.filter(pk=row.pk).update(**{field: masked})


class Migration(migrations.Migration):
    dependencies = [
        ("commands", "0002_own_tables_and_result"),
        ("stations", "0003_commands_move_out"),
    ]

    operations = [
        migrations.AddField(
            model_name="command",
            name="sealed",
            field=models.TextField(blank=True, default="", editable=False),
        ),
        migrations.RunPython(mask_stored, migrations.RunPython.noop),
    ]
