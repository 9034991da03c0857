"""A URLconf whose admin site mounts the command pages the way the project's admin does."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from stations.commands import admin as admin_commands
from stations.commands.models import Command, DiagnosticsUpload, Job, LocalAuthList
from stations.models import ChargingStation

site = admin.AdminSite(name="admin")


class StationAdmin(
    admin_commands.StationCommandsAdminMixin,
    admin_commands.SendCommandPermissionMixin,
    admin.ModelAdmin,
):
    actions = admin_commands.STATION_ACTIONS


site.register(ChargingStation, StationAdmin)
site.register(Command, admin_commands.CommandAdmin)
site.register(Job, admin_commands.JobAdmin)
site.register(DiagnosticsUpload, admin_commands.DiagnosticsUploadAdmin)
site.register(LocalAuthList, admin_commands.LocalAuthListAdmin)

urlpatterns = [
    # The station's commands page links the panel's pages (the station page's commands).
    path("admin/panel/", include(("cpo.panel.views", "panel"))),
    path("admin/", site.urls),
]
