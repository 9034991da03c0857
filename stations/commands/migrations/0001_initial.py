"""The command queue moves from the stations app into its own app, `commands`.

State only: the tables stay where stations 0002 created them (stations_command, ...) until
0002 of this app renames them, so no row moves. The content types move with the models, so
permissions already granted (view_command, manage_job, ...) and the admin log keep pointing at
them.
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

MODELS = ("command", "job", "jobtarget", "diagnosticsupload", "localauthlist")


def move_content_types(apps, schema_editor):
    content_type = apps.get_model("contenttypes", "ContentType")
    for model in MODELS:
        if content_type.objects.filter(app_label="commands", model=model).exists():
            continue
        content_type.objects.filter(app_label="stations", model=model).update(
            app_label="commands"
        )


def restore_content_types(apps, schema_editor):
    content_type = apps.get_model("contenttypes", "ContentType")
    content_type.objects.filter(app_label="commands", model__in=MODELS).update(
        app_label="stations"
    )


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('stations', '0002_commands_jobs_local_lists'),
        ('contenttypes', '0002_remove_content_type_name'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='Command',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('protocol', models.CharField(max_length=16)),
                        ('verb', models.CharField(blank=True, help_text='Empty for a raw action.', max_length=40)),
                        ('action', models.CharField(max_length=50)),
                        ('payload', models.JSONField(default=dict)),
                        ('status', models.CharField(choices=[('queued', 'Queued'), ('sent', 'Sent'), ('accepted', 'Accepted'), ('rejected', 'Rejected'), ('failed', 'Failed'), ('timed_out', 'Timed out'), ('expired', 'Expired')], default='queued', max_length=10)),
                        ('response', models.JSONField(blank=True, null=True)),
                        ('error_code', models.CharField(blank=True, max_length=50)),
                        ('error_description', models.CharField(blank=True, max_length=255)),
                        ('origin', models.CharField(choices=[('admin', 'Operator panel'), ('api', 'REST API'), ('job', 'Job'), ('local_list', 'Local list sync'), ('system', 'System')], default='system', max_length=12)),
                        ('message_id', models.CharField(blank=True, max_length=36)),
                        ('node', models.CharField(blank=True, help_text='Process that sent it.', max_length=100)),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('expires_at', models.DateTimeField(help_text='Not sent after this time.')),
                        ('sent_at', models.DateTimeField(blank=True, null=True)),
                        ('completed_at', models.DateTimeField(blank=True, null=True)),
                        ('requested_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('station', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='commands', to='stations.chargingstation')),
                    ],
                    options={
                        'db_table': 'stations_command',
                        'ordering': ['-id'],
                    },
                ),
                migrations.CreateModel(
                    name='Job',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('kind', models.CharField(choices=[('diagnostics', 'Diagnostics / log collection'), ('firmware', 'Firmware update')], max_length=12)),
                        ('name', models.CharField(blank=True, max_length=200)),
                        ('status', models.CharField(choices=[('running', 'Running'), ('completed', 'Completed'), ('cancelled', 'Cancelled')], default='running', max_length=10)),
                        ('parameters', models.JSONField(blank=True, default=dict)),
                        ('station_model', models.CharField(blank=True, max_length=50)),
                        ('station_filter', models.CharField(blank=True, help_text='Identity prefix, if any.', max_length=100)),
                        ('concurrency', models.PositiveIntegerField(default=10)),
                        ('max_attempts', models.PositiveIntegerField(default=3)),
                        ('target_timeout', models.PositiveIntegerField(default=3600, help_text='Seconds a station may take before its attempt fails.')),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('finished_at', models.DateTimeField(blank=True, null=True)),
                        ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('location', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='stations.location')),
                    ],
                    options={
                        'db_table': 'stations_job',
                        'ordering': ['-id'],
                        'permissions': [('manage_job', 'Can create and cancel jobs')],
                    },
                ),
                migrations.CreateModel(
                    name='JobTarget',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('status', models.CharField(choices=[('pending', 'Pending'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('cancelled', 'Cancelled')], default='pending', max_length=10)),
                        ('attempts', models.PositiveIntegerField(default=0)),
                        ('request_id', models.IntegerField(blank=True, null=True)),
                        ('progress', models.CharField(blank=True, help_text="The station's last reported status.", max_length=50)),
                        ('detail', models.CharField(blank=True, max_length=255)),
                        ('started_at', models.DateTimeField(blank=True, null=True)),
                        ('finished_at', models.DateTimeField(blank=True, null=True)),
                        ('updated_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('command', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='job_targets', to='commands.command')),
                        ('job', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='targets', to='commands.job')),
                        ('station', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='stations.chargingstation')),
                    ],
                    options={
                        'db_table': 'stations_jobtarget',
                        'ordering': ['job', 'station__identity'],
                    },
                ),
                migrations.CreateModel(
                    name='DiagnosticsUpload',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('token', models.CharField(editable=False, max_length=64, unique=True)),
                        ('max_bytes', models.PositiveBigIntegerField()),
                        ('expires_at', models.DateTimeField()),
                        ('file', models.FileField(blank=True, upload_to='diagnostics/%Y/%m/')),
                        ('filename', models.CharField(blank=True, max_length=255)),
                        ('size', models.PositiveBigIntegerField(blank=True, null=True)),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('uploaded_at', models.DateTimeField(blank=True, null=True)),
                        ('station', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='stations.chargingstation')),
                        ('job_target', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='uploads', to='commands.jobtarget')),
                    ],
                    options={
                        'db_table': 'stations_diagnosticsupload',
                        'ordering': ['-id'],
                    },
                ),
                migrations.CreateModel(
                    name='LocalAuthList',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('version', models.IntegerField(default=0)),
                        ('entries', models.JSONField(blank=True, default=dict)),
                        ('status', models.CharField(choices=[('in_sync', 'In sync'), ('pending', 'Update sent'), ('failed', 'Failed'), ('unsupported', 'Not supported')], default='in_sync', max_length=12)),
                        ('pending_version', models.IntegerField(blank=True, null=True)),
                        ('pending_entries', models.JSONField(blank=True, null=True)),
                        ('pending_full', models.BooleanField(default=False)),
                        ('synced_at', models.DateTimeField(blank=True, null=True)),
                        ('pending_command', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='commands.command')),
                        ('station', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='local_list', to='stations.chargingstation')),
                    ],
                    options={'db_table': 'stations_localauthlist'},
                ),
                migrations.AddIndex(
                    model_name='command',
                    index=models.Index(condition=models.Q(('status', 'queued')), fields=['station', 'id'], name='command_queued_idx'),
                ),
                migrations.AddIndex(
                    model_name='command',
                    index=models.Index(condition=models.Q(('status', 'queued')), fields=['expires_at'], name='command_expiry_idx'),
                ),
                migrations.AddIndex(
                    model_name='command',
                    index=models.Index(fields=['station', 'created_at'], name='command_station_idx'),
                ),
                migrations.AddIndex(
                    model_name='jobtarget',
                    index=models.Index(condition=models.Q(('status', 'running')), fields=['station', 'request_id'], name='job_target_running_idx'),
                ),
                migrations.AddConstraint(
                    model_name='jobtarget',
                    constraint=models.UniqueConstraint(fields=('job', 'station'), name='job_target_unique'),
                ),
            ],
        ),
        migrations.RunPython(move_content_types, restore_content_types),
    ]
