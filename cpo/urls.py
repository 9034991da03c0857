from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from cpo.health import healthz

admin.site.site_header = "CPO back office"
admin.site.site_title = "CPO back office"
admin.site.index_title = "Operator panel"

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/", include("stations.urls")),
    path("api/", include("sessions.urls")),
]
