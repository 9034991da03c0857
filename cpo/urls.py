from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.utils.translation import gettext_lazy as _
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from cpo.health import healthz
from stations.commands.views import diagnostics_upload

admin.site.site_header = _("CPO back office")
admin.site.site_title = _("CPO back office")
admin.site.index_title = _("Operator panel")

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    # Before the admin's own catch-all: the panel's pages and the JSON its pages poll.
    path("admin/panel/", include(("cpo.panel.views", "panel"))),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/", include("stations.commands.urls")),
    # One-time upload URLs given to stations for diagnostics and log files.
    path("uploads/diagnostics/<str:token>/", diagnostics_upload, name="diagnostics-upload"),
    path(
        "uploads/diagnostics/<str:token>/<str:filename>",
        diagnostics_upload,
        name="diagnostics-upload-file",
    ),
    path("api/", include("sessions.urls")),
]
