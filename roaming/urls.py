"""OCPI URLs under /ocpi/ (a trailing slash is accepted everywhere: platforms differ)."""

from __future__ import annotations

from django.urls import re_path

from roaming.ocpi import transport, views

VERSION = r"(?P<version>2\.2\.1|2\.1\.1)"
ID = r"[^/]{1,48}"

urlpatterns = [
    re_path(r"^versions/?$", views.versions, name="ocpi-versions"),
    re_path(rf"^{VERSION}/?$", views.version_details, name="ocpi-version-details"),
    re_path(rf"^{VERSION}/credentials/?$", views.credentials, name="ocpi-credentials"),
    re_path(rf"^{VERSION}/locations/?$", views.locations_list, name="ocpi-locations"),
    re_path(rf"^{VERSION}/tariffs/?$", views.tariffs_list, name="ocpi-tariffs"),
    re_path(rf"^{VERSION}/sessions/?$", views.sessions_list, name="ocpi-sessions"),
    re_path(rf"^{VERSION}/cdrs/?$", views.cdrs_list, name="ocpi-cdrs"),
    re_path(
        rf"^{VERSION}/locations/(?P<location_id>{ID})/?$",
        views.location_object,
        name="ocpi-location",
    ),
    re_path(
        rf"^{VERSION}/locations/(?P<location_id>{ID})/(?P<evse_uid>{ID})/?$",
        views.location_object,
        name="ocpi-evse",
    ),
    re_path(
        rf"^{VERSION}/locations/(?P<location_id>{ID})/(?P<evse_uid>{ID})/(?P<connector_id>{ID})/?$",
        views.location_object,
        name="ocpi-connector",
    ),
    re_path(
        rf"^{VERSION}/tokens/(?P<country_code>[A-Za-z]{{2}})/(?P<party_id>[A-Za-z0-9]{{3}})/(?P<uid>{ID})/?$",
        views.token_object,
        name="ocpi-token",
    ),
    re_path(
        rf"^{VERSION}/commands/(?P<command_type>[A-Za-z_]{{1,32}})/?$",
        views.command,
        name="ocpi-command",
    ),
    re_path(
        rf"^{VERSION}/chargingprofiles/(?P<session_id>{ID})/?$",
        views.charging_profile,
        name="ocpi-chargingprofile",
    ),
    re_path(
        rf"^{VERSION}/hubclientinfo/(?P<country_code>[A-Za-z]{{2}})/(?P<party_id>[A-Za-z0-9]{{3}})/?$",
        views.client_info,
        name="ocpi-hubclientinfo",
    ),
    re_path(r"^.*$", transport.not_found, name="ocpi-not-found"),
]
