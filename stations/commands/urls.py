"""REST API of commands and jobs (included at /api/)."""

from __future__ import annotations

from django.urls import path

from stations.commands import apis

urlpatterns = [
    path(
        "stations/<int:station_id>/commands/",
        apis.station_command_send,
        name="station-command-send",
    ),
    path(
        "stations/<int:station_id>/local-list/sync/",
        apis.StationLocalListSyncApi.as_view(),
        name="station-local-list-sync",
    ),
    path("commands/", apis.CommandListApi.as_view(), name="command-list"),
    path("commands/<int:command_id>/", apis.CommandDetailApi.as_view(), name="command-detail"),
    path("jobs/", apis.JobListApi.as_view(), name="job-list"),
    path("jobs/create/", apis.JobCreateApi.as_view(), name="job-create"),
    path("jobs/<int:job_id>/", apis.JobDetailApi.as_view(), name="job-detail"),
    path("jobs/<int:job_id>/cancel/", apis.JobCancelApi.as_view(), name="job-cancel"),
]
