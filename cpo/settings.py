"""Settings of the CPO back office, all read from the environment.

Embedded defaults (nothing set): a SQLite file and a private Redis server, both in the data
directory. Production: DATABASE_URL=postgres://... and REDIS_URL=redis://... .
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from cpo.lib.env import (
    envbool,
    envfloat,
    envint,
    envlist,
    envsecret,
    envstr,
    secret_key_from_data_dir,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(envstr("CPO_DATA_DIR", str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = envsecret("SECRET_KEY") or secret_key_from_data_dir(DATA_DIR)
DEBUG = envbool("DEBUG", False)
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["*"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

# --- Served over TLS ----------------------------------------------------------------------------
# HTTPS=true says browsers reach the back office over TLS (its own or a proxy's): cookies are
# sent over TLS only, plain HTTP is redirected and HSTS tells browsers to stay on HTTPS. Each
# SECURE_* value can be set on its own. Chargers are not affected: websockets are not
# redirected (ws:// stays open for security profiles 1 and 2), nor are /healthz (a load
# balancer's probe) and the one-time upload URLs (stations often upload over plain HTTP).
HTTPS = envbool("HTTPS", False)
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", HTTPS)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^uploads/"]
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", HTTPS)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", HTTPS)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", HTTPS)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", HTTPS)
# Behind a TLS-terminating proxy: the header it sets on requests it received over TLS, e.g.
# X-Forwarded-Proto (then only the proxy may reach daphne). Unset, SECURE_SSL_REDIRECT behind
# such a proxy would redirect forever.
_proxy_ssl_header = envstr("SECURE_PROXY_SSL_HEADER", "")
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https") if _proxy_ssl_header else None
)
# --- The map of sites (the panel's Map page, Leaflet served from static/) -----------------------
# The tile server's URL template ({s} subdomain, {z}/{x}/{y}) and the attribution its licence
# asks for. Empty: no tiles, the page shows the markers and the list of sites only.
MAP_TILE_URL = envstr("MAP_TILE_URL", "https://tile.openstreetmap.org/{z}/{x}/{y}.png")
MAP_TILE_ATTRIBUTION = envstr(
    "MAP_TILE_ATTRIBUTION",
    '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors',
)


def _tile_origin(url: str) -> str:
    """The CSP source of the tile images: scheme and host, "{s}" subdomains as a wildcard."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return ""
    host = re.sub(r"^\{s\}\.", "*.", parts.netloc)
    return f"{parts.scheme}://{host}"


# The Content-Security-Policy of every HTTP response (cpo.lib.security): scripts, fonts and
# images from the back office itself only (Chart.js, Leaflet and the Swagger UI are served
# from static/), but for the map's tile server; inline style attributes are allowed, inline
# scripts are not. CSP="" turns it off.
CONTENT_SECURITY_POLICY = envstr(
    "CSP",
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    f"img-src 'self' data: {_tile_origin(MAP_TILE_URL)}".rstrip()
    + "; font-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'",
)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    # The Swagger UI's files, served from static/ (no CDN: the CSP allows only 'self').
    "drf_spectacular_sidecar",
    "django_filters",
    "import_export",
    "channels",
    "cpo.apps.CpoConfig",
    # The one outbox (roaming pushes, integrator webhooks, alerts) and the webhooks on it.
    "cpo.outbox.apps.OutboxConfig",
    "stations.apps.StationsConfig",
    # Rooms of the network: the command queue and the OCPP edge (which registers its codec).
    "stations.commands.apps.CommandsConfig",
    "stations.ocpp.apps.OcppConfig",
    # Incidents, detectors and playbooks; a room of the network that reads charging sessions.
    "stations.monitoring.apps.MonitoringConfig",
    # Energy management: grid-node trees, limits, the allocator and its profiles to stations.
    "stations.energy.apps.EnergyConfig",
    # Label "charging": django.contrib.sessions already owns the label "sessions".
    "sessions.apps.SessionsConfig",
    "tariffs.apps.TariffsConfig",
    "billing.apps.BillingConfig",
    "roaming.apps.RoamingConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "cpo.lib.security.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The language of a request: the language cookie, else the browser's Accept-Language...
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # ...unless the signed-in user chose one in the panel's header (User.language).
    "cpo.lib.i18n.UserLanguageMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "cpo.urls"
ASGI_APPLICATION = "cpo.asgi.application"
WSGI_APPLICATION = "cpo.wsgi.application"
AUTH_USER_MODEL = "cpo.User"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------------
SQLITE_PATH = Path(envstr("CPO_SQLITE_PATH", str(DATA_DIR / "cpo.sqlite3")))
DATABASE_URL = envsecret("DATABASE_URL")
# The ASGI server's process (cpo/asgi.py sets CPO_ASGI) runs each HTTP request's sync code on a
# thread of its own, so a persistent connection (CONN_MAX_AGE > 0) stays open after every
# request until the garbage collector finds it: 200 requests left up to 83 connections open.
# That process takes its PostgreSQL connections from psycopg's pool instead: at most
# DB_POOL_MAX_SIZE, each handed back at the end of a request or of a consumer's database call.
# Celery workers and management commands have a fixed set of threads and keep persistent ones.
ASGI_PROCESS = envbool("CPO_ASGI", False)
if DATABASE_URL:
    pooled = ASGI_PROCESS and DATABASE_URL.startswith(("postgres:", "postgresql:", "pgsql:"))
    DATABASES: dict[str, Any] = {
        "default": dj_database_url.parse(
            DATABASE_URL,
            conn_max_age=0 if pooled else envint("DB_CONN_MAX_AGE", 60),
            conn_health_checks=True,
        )
    }
    if pooled:
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": envint("DB_POOL_MIN_SIZE", 2),
            "max_size": envint("DB_POOL_MAX_SIZE", 10),
            # Seconds a request or a charger's message waits for a free connection before it
            # fails (psycopg's default); a full pool makes callers queue, not the server refuse.
            "timeout": envint("DB_POOL_TIMEOUT", 30),
        }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": SQLITE_PATH,
            "OPTIONS": {
                # WAL lets the web process read while a worker writes; IMMEDIATE takes the write
                # lock at BEGIN so two writers queue on busy_timeout instead of failing with
                # "database is locked" halfway through a transaction.
                "init_command": (
                    "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;PRAGMA busy_timeout=20000;"
                ),
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
            # A file, not :memory:, so that live servers and workers started by tests share it.
            "TEST": {"NAME": str(DATA_DIR / "test.sqlite3")},
        }
    }
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    DATABASES["default"].setdefault("TEST", {})["NAME"] = envstr("DB_TEST_NAME", "") or None
    if not DATABASES["default"]["TEST"]["NAME"]:
        del DATABASES["default"]["TEST"]["NAME"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The status history's covering index (stations.ConnectorStatusEvent, for the uptime report)
# carries non-key columns on PostgreSQL; SQLite keeps the index without them, which is all
# the embedded defaults need, so its warning is not shown to everyone who runs `make run`.
SILENCED_SYSTEM_CHECKS = ["models.W040"]

# --- Redis: Celery broker, result backend and the Channels layer -------------------------------
EMBEDDED_REDIS = not envstr("REDIS_URL")
REDIS_SOCKET = DATA_DIR / "redis.sock"
REDIS_URL = envsecret("REDIS_URL") or f"unix://{REDIS_SOCKET}"
if EMBEDDED_REDIS:
    CELERY_BROKER_URL = f"redis+socket://{REDIS_SOCKET}"
    CELERY_RESULT_BACKEND = f"redis+socket://{REDIS_SOCKET}"
else:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL

# The layer only wakes the connection holding a station's socket; the commands themselves wait
# in the database. Its receive() outlives Redis outages (cpo.lib.channel_layer), and the OCPP
# edge re-joins its groups and polls the queue (stations.ocpp.delivery).
CHANNEL_LAYERS: dict[str, dict[str, Any]] = {
    "default": {
        "BACKEND": "cpo.lib.channel_layer.ResilientRedisChannelLayer",
        "CONFIG": {
            # A connect timeout: an unreachable Redis must fail a call, not hang it.
            "hosts": [{"address": REDIS_URL, "socket_connect_timeout": 2}],
            "prefix": envstr("CHANNELS_PREFIX", "cpo"),
            "capacity": 1000,
            "expiry": 60,
        },
    }
}

# One Redis client per process, not one per charger connection (cpo/lib/redis_cache.py).
CACHES = {
    "default": {
        "BACKEND": "cpo.lib.redis_cache.SharedRedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "cpo",
        # An unreachable Redis must fail a cache call fast: the webhook subscriptions are read
        # from it on the OCPP path and fall back to the database (cpo.outbox.webhooks).
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    },
    # The API's throttle counters (cpo.lib.api): shared by every process through Redis.
    "throttle": {
        "BACKEND": "cpo.lib.redis_cache.SharedRedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "cpo-throttle",
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    },
}

# --- Celery -------------------------------------------------------------------------------------
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_TASK_TIME_LIMIT = 5 * 60
CELERY_TASK_SOFT_TIME_LIMIT = 4 * 60
CELERY_RESULT_EXPIRES = timedelta(days=1)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = envbool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")

# --- Internationalisation and time --------------------------------------------------------------
# The panel's languages (templates, menus, alerts, invoice PDFs): cpo/locale/<code>/LC_MESSAGES.
# Numbers and dates follow the active language (Django's own formats per language).
LANGUAGE_CODE = envstr("LANGUAGE_CODE", "en")
LANGUAGES = [("en", "English"), ("nl", "Nederlands"), ("de", "Deutsch")]
LOCALE_PATHS = [BASE_DIR / "cpo" / "locale"]
# English dates as operators read them (cpo/formats/en); Dutch and German are Django's own.
FORMAT_MODULE_PATH = ["cpo.formats"]
if LANGUAGE_CODE not in dict(LANGUAGES):
    raise ImproperlyConfigured(
        f"LANGUAGE_CODE must be one of {', '.join(dict(LANGUAGES))}, got {LANGUAGE_CODE!r}"
    )
# UTC everywhere: billing and OCPP timestamps are UTC; tariffs use each site's own time zone.
# A system check refuses any other value.
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static and media ---------------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
# WhiteNoise expects the directory even before the first collectstatic.
STATIC_ROOT.mkdir(exist_ok=True)
MEDIA_URL = "media/"
MEDIA_ROOT = DATA_DIR / "media"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "admin:login"

# Failed panel logins (cpo/login_limits.py): after LOGIN_FAILURE_LIMIT failures of one username
# or from one address, logins of that username / from that address are refused, even with the
# right password, for LOGIN_LOCKOUT_SECONDS, twice as long for each lockout after that (at most
# a day) until a successful login or a superuser lifts it. API tokens are not logins.
LOGIN_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 5)
LOGIN_LOCKOUT_SECONDS = envint("LOGIN_LOCKOUT_SECONDS", 15 * 60)
AUTHENTICATION_BACKENDS = ["cpo.login_limits.LimitedModelBackend"]

# --- REST API -----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Per-user API tokens (cpo.api_tokens): "Authorization: Bearer cpo_...".
        "cpo.api_tokens.ApiTokenAuthentication",
        # DRF's own keys ("Authorization: Token <40 hex>"), made by the superuser in the admin
        # before per-user tokens existed: still accepted, with the same failure throttle.
        "cpo.api_tokens.LegacyTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.DjangoModelPermissions"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "cpo.lib.api.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_THROTTLE_CLASSES": ["cpo.lib.throttles.UserRateThrottle"],
    # The throttles' source address: REMOTE_ADDR, never a client's own X-Forwarded-For (DRF
    # trusts that header when this is None). Behind N proxies that append to it, set N.
    "NUM_PROXIES": envint("API_NUM_PROXIES", 0),
    "DEFAULT_THROTTLE_RATES": {
        # Requests per user (per address before login), every API route.
        "user": envstr("API_RATE_PER_USER", "1200/min"),
        # Failed token authentications per source address and per token prefix.
        "token_failure": envstr("API_TOKEN_FAILURES", "10/min"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CPO back office API",
    "DESCRIPTION": "Stations, sessions, tokens, commands, tariffs and billing.",
    "VERSION": "1",
    "ENUM_NAME_OVERRIDES": {
        "ChargingSessionStatusEnum": "sessions.models.ChargingSession.Status",
        "CustomerAccountKindEnum": "sessions.models.CustomerAccount.Kind",
        "JobKindEnum": "stations.commands.models.Job.Kind",
        "JobStatusEnum": "stations.commands.models.Job.Status",
        "InvoiceKindEnum": "billing.models.Invoice.Kind",
        "InvoiceStatusEnum": "billing.models.Invoice.Status",
        "IdTokenTypeEnum": "sessions.models.IdToken.Type",
        "TariffTypeEnum": "tariffs.models.Tariff.Type",
        "PriceComponentTypeEnum": "tariffs.models.PriceComponent.Type",
        "IncidentTypeEnum": "stations.monitoring.models.IncidentType",
        "IncidentSeverityEnum": "stations.monitoring.models.Incident.Severity",
        "IncidentStateEnum": "stations.monitoring.models.Incident.State",
        "IncidentPlaybookStateEnum": "stations.monitoring.models.Incident.PlaybookState",
        "IncidentEntryKindEnum": "stations.monitoring.models.IncidentEntry.Kind",
    },
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "cpo.lib.api.error_responses_hook",
    ],
}

# --- OCPP ---------------------------------------------------------------------------------------
# Unknown identities are refused at the handshake unless this is on; then they are created
# Pending until an operator accepts them.
OCPP_AUTO_REGISTER = envbool("OCPP_AUTO_REGISTER", False)
OCPP_HEARTBEAT_INTERVAL = envint("OCPP_HEARTBEAT_INTERVAL", 300)
# A station is marked offline after this many missed heartbeat intervals.
OCPP_OFFLINE_AFTER_MISSED_HEARTBEATS = envint("OCPP_OFFLINE_AFTER_MISSED_HEARTBEATS", 3)
OCPP_RESPONSE_TIMEOUT = envint("OCPP_RESPONSE_TIMEOUT", 30)
# A node with more charger database calls in flight than this (waiting for a thread or running)
# is saturated: a BootNotification is answered Pending with a jittered interval instead of
# queueing behind them (stations.ocpp.load). -1 never defers a boot; 0 defers every one.
OCPP_BOOT_PENDING_BACKLOG = envint("OCPP_BOOT_PENDING_BACKLOG", 200)
# Shortest HTTP Basic password the panel accepts for a station. OCPP 2.0.1 and the 1.6 security
# extension want 16-40 characters; legacy 1.6 chargers have no rule and some ship with 8.
OCPP_STATION_PASSWORD_MIN_LENGTH = envint("OCPP_STATION_PASSWORD_MIN_LENGTH", 16)
if not 1 <= OCPP_STATION_PASSWORD_MIN_LENGTH <= 40:
    raise ImproperlyConfigured(
        "OCPP_STATION_PASSWORD_MIN_LENGTH must be between 1 and 40 (the longest password a "
        f"station may have), got {OCPP_STATION_PASSWORD_MIN_LENGTH}"
    )
# The polled fallback of command delivery: every this many seconds each daphne process looks
# for queued commands of its stations whose channel-layer wake-up was lost (Redis away).
OCPP_COMMAND_POLL_INTERVAL = envint("OCPP_COMMAND_POLL_INTERVAL", 30)
# Security profile 3: identity from a client certificate, as reported by a TLS-terminating
# proxy. The header is trusted only from these proxy addresses.
OCPP_CLIENT_CERT_HEADER = envstr("OCPP_CLIENT_CERT_HEADER", "X-SSL-Client-S-DN")
OCPP_TRUSTED_PROXIES = envlist("OCPP_TRUSTED_PROXIES", [])
# The verified client certificate's serial number (hex), forwarded by the same proxy: a
# revoked certificate of ours is refused at the handshake (HAProxy: %[ssl_c_serial,hex]).
OCPP_CLIENT_CERT_SERIAL_HEADER = envstr("OCPP_CLIENT_CERT_SERIAL_HEADER", "X-SSL-Client-Serial")
# Local ports on which this process serves TLS itself (daphne -e ssl:PORT:...): a connection
# to one of them is over TLS (security profile 2 with HTTP Basic). Behind a TLS-terminating
# proxy in OCPP_TRUSTED_PROXIES, X-Forwarded-Proto: https says the same.
OCPP_TLS_PORTS = [int(port) for port in envlist("OCPP_TLS_PORTS", [])]
# A profile-2 station on plain ws is refused unless TLS is terminated in front of this
# process by something that sends no X-Forwarded-Proto (a load balancer on a private network).
OCPP_PROFILE2_ALLOW_PLAIN = envbool("OCPP_PROFILE2_ALLOW_PLAIN", False)
# Our certificate authority (stations.pki): a root and an intermediate generated on first use
# into DATA_DIR/pki, or the operator's own (PEM paths; the intermediate signs station
# certificates, the root is what stations get as their CSMSRootCertificate).
PKI_DIR = Path(envstr("PKI_DIR", str(DATA_DIR / "pki")))
PKI_ROOT_CERT = envstr("PKI_ROOT_CERT", "")
PKI_INTERMEDIATE_CERT = envstr("PKI_INTERMEDIATE_CERT", "")
PKI_INTERMEDIATE_KEY = envstr("PKI_INTERMEDIATE_KEY", "")
# The organisation a station certificate's O must name (the security whitepaper: O is the
# CPO, CN the station's identity); empty: only the CN is checked.
PKI_ORGANIZATION = envstr("PKI_ORGANIZATION", "")
PKI_CERTIFICATE_DAYS = envint("PKI_CERTIFICATE_DAYS", 365)
# A station certificate this close to its end is renewed (TriggerMessage for a new CSR).
PKI_RENEW_DAYS = envint("PKI_RENEW_DAYS", 30)
# The CSMS's own address for profile upgrades of 2.0.1 stations (SetNetworkProfile), e.g.
# wss://csms.example.com/ocpp; the configuration slot it is written to.
OCPP_CSMS_URL = envstr("OCPP_CSMS_URL", "")
OCPP_NETWORK_PROFILE_SLOT = envint("OCPP_NETWORK_PROFILE_SLOT", 1)
# GetCertificateStatus: OCSP answers cached this long (never past their nextUpdate); the
# responder hosts a station may have us ask (empty: any).
OCSP_CACHE_SECONDS = envint("OCSP_CACHE_SECONDS", 300)
OCSP_ALLOWED_HOSTS = envlist("OCSP_ALLOWED_HOSTS", [])
# Get15118EVCertificate is forwarded to this certificate provisioning service (JSON over
# HTTP, stations.certificate_services); unset, it is answered Failed.
ISO15118_CERTIFICATE_SERVICE_URL = envstr("ISO15118_CERTIFICATE_SERVICE_URL", "")
# A panel login's source address is the peer's, or the X-Forwarded-For entry the last of
# these proxies added (the OCPP edge's proxies unless set).
LOGIN_TRUSTED_PROXIES = envlist("LOGIN_TRUSTED_PROXIES", OCPP_TRUSTED_PROXIES)
# Last-seen writes are throttled: at most one per station per this many seconds.
OCPP_LAST_SEEN_WRITE_INTERVAL = envint("OCPP_LAST_SEEN_WRITE_INTERVAL", 30)
OCPP_MESSAGE_LOG_RETENTION_DAYS = envint("OCPP_MESSAGE_LOG_RETENTION_DAYS", 14)
# Meter samples are billing evidence (signed values among them): kept unless this is set; on
# PostgreSQL whole months older than this many days are dropped (0: keep everything).
METER_SAMPLE_RETENTION_DAYS = envint("METER_SAMPLE_RETENTION_DAYS", 0)
# Abuse bounds of the OCPP edge (stations.ocpp.limits, README "Bad input and abuse at the OCPP
# edge"). A frame larger than this is answered with a CALLERROR and not parsed (0: no limit).
OCPP_MAX_FRAME_BYTES = envint("OCPP_MAX_FRAME_BYTES", 256 * 1024)
# Messages per second per connection on average, in bursts of up to OCPP_RATE_LIMIT_BURST;
# 0 turns the limit off. A station over it gets CALLERRORs; as many refusals again as the
# burst closes its connection (code 4008).
OCPP_RATE_LIMIT_PER_SECOND = envint("OCPP_RATE_LIMIT_PER_SECOND", 100)
OCPP_RATE_LIMIT_BURST = envint("OCPP_RATE_LIMIT_BURST", 1000)
# Bytes of erroneous frames (each cut to 2 KiB) the message log keeps per station and UTC day.
OCPP_ERROR_LOG_BYTES_PER_DAY = envint("OCPP_ERROR_LOG_BYTES_PER_DAY", 10 * 1024 * 1024)
# Event times (timestamp, generatedAt) further from now than this are absurd (stations.ocpp
# .bounds): refused, or replaced by the time of receipt in a transaction message.
OCPP_TIMESTAMP_MAX_PAST_DAYS = envint("OCPP_TIMESTAMP_MAX_PAST_DAYS", 5 * 366)
OCPP_TIMESTAMP_MAX_FUTURE_DAYS = envint("OCPP_TIMESTAMP_MAX_FUTURE_DAYS", 2)
# The identities a station may connect with: OCPP-J's identity charset (a-z, A-Z, 0-9 and
# * - _ = + | @ .; without ':', which ends HTTP Basic's username), at most 48 characters.
OCPP_IDENTITY_PATTERN = envstr("OCPP_IDENTITY_PATTERN", r"[A-Za-z0-9*\-_=+|@.]{1,48}")
# Failed HTTP Basic attempts (stations.admission): after OCPP_AUTH_FREE_FAILURES failures per
# identity or per source address, each further attempt waits twice as long (from 1 s); after
# OCPP_AUTH_LOCKOUT_FAILURES the identity or address is refused for OCPP_AUTH_LOCKOUT_MINUTES.
# Failures are counted over OCPP_AUTH_FAILURE_WINDOW_MINUTES.
OCPP_AUTH_FREE_FAILURES = envint("OCPP_AUTH_FREE_FAILURES", 3)
OCPP_AUTH_LOCKOUT_FAILURES = envint("OCPP_AUTH_LOCKOUT_FAILURES", 10)
OCPP_AUTH_LOCKOUT_MINUTES = envint("OCPP_AUTH_LOCKOUT_MINUTES", 15)
OCPP_AUTH_FAILURE_WINDOW_MINUTES = envint("OCPP_AUTH_FAILURE_WINDOW_MINUTES", 15)
NODE_NAME = envstr("CPO_NODE_NAME", "")
# Diagnostics and log files upload to the back office itself: the base URL stations reach it
# on (the request's own host is used when a job is created from the panel or the API).
OCPP_UPLOAD_BASE_URL = envstr("OCPP_UPLOAD_BASE_URL", "http://localhost:8000")
OCPP_DIAGNOSTICS_MAX_BYTES = envint("OCPP_DIAGNOSTICS_MAX_BYTES", 50 * 1024 * 1024)
OCPP_DIAGNOSTICS_UPLOAD_TTL = envint("OCPP_DIAGNOSTICS_UPLOAD_TTL", 2 * 24 * 3600)

# --- Monitoring (stations.monitoring; README "Monitoring and incidents") ------------------------
# A station is probed (TriggerMessage Heartbeat) once it has sent no frame for
# max(2 x its heartbeat interval, this many seconds); it is offline when the probe fails too.
MONITORING_OFFLINE_MIN_SECONDS = envint("MONITORING_OFFLINE_MIN_SECONDS", 600)
# A probe not sent within this many seconds (the station's socket is not there) expires: failed.
MONITORING_PROBE_EXPIRY_SECONDS = envint("MONITORING_PROBE_EXPIRY_SECONDS", 120)
# A silent station is probed again after this many seconds.
MONITORING_PROBE_REPEAT_SECONDS = envint("MONITORING_PROBE_REPEAT_SECONDS", 900)
MONITORING_FLAPPING_CONNECTS_PER_HOUR = envint("MONITORING_FLAPPING_CONNECTS_PER_HOUR", 6)
# More boots than this in 24 hours is a reboot loop; a boot within this many minutes after a
# Reset we sent (accepted) is ours and not counted.
MONITORING_REBOOTS_PER_DAY = envint("MONITORING_REBOOTS_PER_DAY", 5)
MONITORING_REBOOT_AFTER_RESET_MINUTES = envint("MONITORING_REBOOT_AFTER_RESET_MINUTES", 10)
MONITORING_FAULTED_MINUTES = envint("MONITORING_FAULTED_MINUTES", 5)
MONITORING_PREPARING_MINUTES = envint("MONITORING_PREPARING_MINUTES", 15)
MONITORING_FINISHING_MINUTES = envint("MONITORING_FINISHING_MINUTES", 30)
# An active session with no meter values or events for this long, or running this long.
MONITORING_STUCK_TRANSACTION_MINUTES = envint("MONITORING_STUCK_TRANSACTION_MINUTES", 60)
MONITORING_MAX_SESSION_HOURS = envint("MONITORING_MAX_SESSION_HOURS", 48)
# Charging (the connector says so) this long with less energy than this.
MONITORING_NO_ENERGY_MINUTES = envint("MONITORING_NO_ENERGY_MINUTES", 15)
MONITORING_NO_ENERGY_WH = envint("MONITORING_NO_ENERGY_WH", 10)
# The connector reported Available after the session started, this many minutes ago.
MONITORING_GHOST_SESSION_MINUTES = envint("MONITORING_GHOST_SESSION_MINUTES", 5)
# More than this many refused authorizations at one station within the window.
MONITORING_AUTH_REJECTED_COUNT = envint("MONITORING_AUTH_REJECTED_COUNT", 10)
MONITORING_AUTH_REJECTED_WINDOW_MINUTES = envint("MONITORING_AUTH_REJECTED_WINDOW_MINUTES", 10)
# An open incident's timeline notes "still present" at most once per this many minutes.
MONITORING_STILL_PRESENT_NOTE_MINUTES = envint("MONITORING_STILL_PRESENT_NOTE_MINUTES", 60)
# The hard limits every playbook is checked against when saved: the shortest period in which
# a station may get one automatic reset, the shortest back-off between steps, the largest
# number of stations of one site a playbook may work on at once.
MONITORING_RESET_PERIOD_MIN_MINUTES = envint("MONITORING_RESET_PERIOD_MIN_MINUTES", 60)
MONITORING_BACKOFF_MIN_SECONDS = envint("MONITORING_BACKOFF_MIN_SECONDS", 30)
MONITORING_SITE_CONCURRENCY_MAX = envint("MONITORING_SITE_CONCURRENCY_MAX", 10)
# A connected station (socket open) silent for its heartbeat interval plus the interval of
# last-seen writes plus this many seconds has a heartbeat gap.
MONITORING_HEARTBEAT_GAP_SECONDS = envint("MONITORING_HEARTBEAT_GAP_SECONDS", 60)
# Reconnect flood: a station connecting more than this many times within an hour is refused
# at the handshake for the cool-down (stations.monitoring.protection).
MONITORING_RECONNECTS_PER_HOUR = envint("MONITORING_RECONNECTS_PER_HOUR", 20)
MONITORING_RECONNECT_COOLDOWN_MINUTES = envint("MONITORING_RECONNECT_COOLDOWN_MINUTES", 15)
# A certificate recorded for a station that expires within this many days.
MONITORING_CERTIFICATE_EXPIRY_DAYS = envint("MONITORING_CERTIFICATE_EXPIRY_DAYS", 30)
# Outbox messages (webhooks, partners; not alert e-mail) that became dead letters this recently.
MONITORING_DEAD_LETTER_HOURS = envint("MONITORING_DEAD_LETTER_HOURS", 24)
# Configuration drift compares what we set (accepted) in this many days with later reports.
MONITORING_DRIFT_DAYS = envint("MONITORING_DRIFT_DAYS", 90)
# NotifyEvent problems of this many days are considered (older ones are history).
MONITORING_DEVICE_EVENT_DAYS = envint("MONITORING_DEVICE_EVENT_DAYS", 7)
# The daily digest e-mail of every alert rule, at this hour (0-23) of the rule's time zone.
MONITORING_DIGEST_HOUR = envint("MONITORING_DIGEST_HOUR", 7)

# --- Energy management (stations.energy; README "Energy management") ---------------------------
# Seconds a process trusts its set of energy-managed stations before reading it again: the OCPP
# edge checks it on every status and meter message, without a query.
ENERGY_MANAGED_CACHE_SECONDS = envfloat("ENERGY_MANAGED_CACHE_SECONDS", 10.0)
# Triggers within this many seconds of each other make one allocation run of a site.
ENERGY_DEBOUNCE_SECONDS = envfloat("ENERGY_DEBOUNCE_SECONDS", 0.2)
# Meter values (feedback) and the periodic pass wait longer, in their own lane.
ENERGY_METER_DEBOUNCE_SECONDS = envfloat("ENERGY_METER_DEBOUNCE_SECONDS", 5.0)
# The periodic pass over every managed site (fresh limits, dead-man refresh).
ENERGY_PASS_SECONDS = envfloat("ENERGY_PASS_SECONDS", 30.0)

# --- Charging and rating -------------------------------------------------------------------------
# A register reading lower than the one before by more than this is a meter reset (a station
# rebooted mid-session); smaller drops are rounding jitter (sessions.energy).
CHARGING_METER_RESET_THRESHOLD_WH = envint("CHARGING_METER_RESET_THRESHOLD_WH", 100)
# The largest meter reading (Wh) or sampled value a station may report (stations.ocpp.bounds):
# a register of 100,000,000 kWh, well inside the numeric columns.
CHARGING_METER_MAX_WH = envint("CHARGING_METER_MAX_WH", 10**11)
# A session a station no longer knows (it booted again, its connector became Available) is
# closed on an estimate at once but rated only this many seconds later: a station that kept
# the transaction sends its queued stop right after booting, and that stop wins. 0: at once.
CHARGING_ESTIMATE_RATING_DELAY_SECONDS = envint("CHARGING_ESTIMATE_RATING_DELAY_SECONDS", 120)
# Parking (Finishing, SuspendedEV, ...) shorter than this is not billed as parking: the state
# before it goes on (tariffs.selectors, charging states of the usage).
TARIFFS_PARKING_GRACE_SECONDS = envint("TARIFFS_PARKING_GRACE_SECONDS", 120)

# --- Billing ------------------------------------------------------------------------------------
# The seller on every invoice (frozen into the invoice when it is issued).
BILLING_SELLER = {
    "name": envstr("BILLING_SELLER_NAME", "CPO Operations B.V."),
    "address": envstr("BILLING_SELLER_ADDRESS", "Stationsplein 1"),
    "postal_code": envstr("BILLING_SELLER_POSTAL_CODE", "1012 AB"),
    "city": envstr("BILLING_SELLER_CITY", "Amsterdam"),
    "country": envstr("BILLING_SELLER_COUNTRY", "NL"),
    "vat_id": envstr("BILLING_SELLER_VAT_ID", "NL000000000B01"),
    "email": envstr("BILLING_SELLER_EMAIL", "billing@example.com"),
    "iban": envstr("BILLING_SELLER_IBAN", "NL91ABNA0417164300"),
    "bic": envstr("BILLING_SELLER_BIC", "ABNANL2A"),
    # The seller's company register number (in the Netherlands: KvK).
    "registration_number": envstr("BILLING_SELLER_REGISTRATION_NUMBER", "12345678"),
}
# Days between an invoice's issue date and its due date (an account may have its own).
BILLING_PAYMENT_TERMS_DAYS = envint("BILLING_PAYMENT_TERMS_DAYS", 14)
# The seller's time zone: billing periods and invoice dates of accounts without their own.
BILLING_TIME_ZONE = envstr("BILLING_TIME_ZONE", "Europe/Amsterdam")
# Off: period close makes drafts that Finance reviews and issues. On: issued at once.
BILLING_AUTO_ISSUE = envbool("BILLING_AUTO_ISSUE", False)
# At most this many periods closed (and sessions swept for missing CDRs) per beat run.
BILLING_CLOSE_BATCH_SIZE = envint("BILLING_CLOSE_BATCH_SIZE", 500)
BILLING_CDR_SWEEP_BATCH_SIZE = envint("BILLING_CDR_SWEEP_BATCH_SIZE", 200)
BILLING_RATING_MAX_ATTEMPTS = envint("BILLING_RATING_MAX_ATTEMPTS", 5)

# --- Roaming (OCPI) ------------------------------------------------------------------------------
# The base URL partners reach our OCPI endpoints on (versions, module URLs, Link headers).
ROAMING_OCPI_BASE_URL = envstr("ROAMING_OCPI_BASE_URL", "http://localhost:8000").rstrip("/")
# The largest page a list GET returns (X-Limit), and the page when the partner asks none.
ROAMING_PAGE_MAX = envint("ROAMING_PAGE_MAX", 100)
# Hours a registration token (token A) given to a pending partner stays usable.
ROAMING_TOKEN_A_HOURS = envint("ROAMING_TOKEN_A_HOURS", 72)
# After a credentials PUT the partner's previous token keeps working this long, so calls
# already on their way when the new token committed are not refused.
ROAMING_REROLL_GRACE_SECONDS = envint("ROAMING_REROLL_GRACE_SECONDS", 300)
# Seconds one outbound call to a partner (versions, credentials) may take.
ROAMING_HTTP_TIMEOUT = envint("ROAMING_HTTP_TIMEOUT", 10)
# A roaming session's kWh, charging periods and cost are PATCHed to its eMSP this often while
# it charges (besides the PUTs at its start and end).
OCPI_SESSION_PATCH_MINUTES = envint("OCPI_SESSION_PATCH_MINUTES", 15)
# The currency of a session's cost before the rating priced it (sessions without a tariff).
OCPI_DEFAULT_CURRENCY = envstr("OCPI_DEFAULT_CURRENCY", "EUR")
# Seconds an Authorize or start waits at most for eMSPs asked in real time (all at once).
ROAMING_REALTIME_DEADLINE = envfloat("ROAMING_REALTIME_DEADLINE", 3.0)
# Seconds a partner's command (commands, chargingprofiles) waits for the station's answer
# before its result is TIMEOUT; told to the partner as the CommandResponse's timeout.
ROAMING_COMMAND_TIMEOUT = envint("ROAMING_COMMAND_TIMEOUT", 60)
# The SSRF guard off for every partner (tests on loopback): response URLs on private and
# loopback addresses are accepted. Otherwise only partners ticked "allow private URLs" may.
ROAMING_ALLOW_PRIVATE_URLS = envbool("ROAMING_ALLOW_PRIVATE_URLS", False)

# --- Operator panel -----------------------------------------------------------------------------
# "Today" on the dashboard and the days/months of its charts; per-site reports use each site's zone.
PANEL_TIME_ZONE = envstr("PANEL_TIME_ZONE", "UTC")
# Seconds between live refreshes of the dashboard and the station page.
PANEL_REFRESH_SECONDS = envint("PANEL_REFRESH_SECONDS", 5)
# Alerts: a session running longer than this, or active this long without any energy.
PANEL_LONG_SESSION_HOURS = envint("PANEL_LONG_SESSION_HOURS", 12)
PANEL_NO_ENERGY_MINUTES = envint("PANEL_NO_ENERGY_MINUTES", 15)

# --- Outbox and webhooks ------------------------------------------------------------------------
# Back-off after the n-th failed attempt: min(max, base x 2^(n-1)), half of it random.
OUTBOX_RETRY_BASE_SECONDS = envfloat("OUTBOX_RETRY_BASE_SECONDS", 30.0)
OUTBOX_RETRY_MAX_SECONDS = envfloat("OUTBOX_RETRY_MAX_SECONDS", 3600.0)
# A message still failing after this many attempts, or this old, is a dead letter.
OUTBOX_MAX_ATTEMPTS = envint("OUTBOX_MAX_ATTEMPTS", 20)
OUTBOX_MAX_AGE_SECONDS = envint("OUTBOX_MAX_AGE_SECONDS", 3 * 24 * 3600)
# Seconds to connect, and to wait for each read of the answer.
OUTBOX_HTTP_TIMEOUT_SECONDS = envfloat("OUTBOX_HTTP_TIMEOUT_SECONDS", 10.0)
# Messages of one destination claimed at a time, and how long a claim lasts: a worker that
# dies mid-delivery leaves its messages to the sweep after this.
OUTBOX_BATCH_SIZE = envint("OUTBOX_BATCH_SIZE", 10)
OUTBOX_LEASE_SECONDS = envint("OUTBOX_LEASE_SECONDS", 300)
# One delivery task sends for at most this long, then hands over to a fresh task.
OUTBOX_TASK_BUDGET_SECONDS = envfloat("OUTBOX_TASK_BUDGET_SECONDS", 60.0)
OUTBOX_SWEEP_SECONDS = envfloat("OUTBOX_SWEEP_SECONDS", 15.0)

# --- E-mail (monitoring alerts, through the outbox's "email" transport) ------------------------
EMAIL_BACKEND = envstr("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = envstr("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25)
EMAIL_HOST_USER = envstr("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = envstr("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)
# Seconds to connect and for each reply: a mail server that hangs costs one attempt, and the
# outbox retries it.
EMAIL_TIMEOUT = envfloat("EMAIL_TIMEOUT", 10.0)
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "cpo@localhost")

CELERY_BEAT_SCHEDULE = {
    # Every OUTBOX_SWEEP_SECONDS: deliver outbox messages whose wake-up or retry was lost, and
    # those of a worker that died mid-delivery.
    "outbox-sweep": {"task": "cpo.outbox.tasks.outbox_sweep", "schedule": OUTBOX_SWEEP_SECONDS},
    # Every minute: PATCH charging roaming sessions to their eMSP (OCPI_SESSION_PATCH_MINUTES),
    # push the tariff versions that came into force.
    "roaming-push-due": {"task": "roaming.tasks.roaming_push_due", "schedule": 60.0},
    # Nightly: re-send each partner what it is missing (see roaming.push.partner_reconcile).
    "roaming-reconcile": {
        "task": "roaming.tasks.roaming_reconcile",
        "schedule": crontab(hour=3, minute=15),
    },
    # Every minute: the monitoring detectors, then the next steps of the remediation playbooks.
    "stations-monitoring-pass": {
        "task": "stations.monitoring.tasks.monitoring_pass",
        "schedule": 60.0,
    },
    # Every minute: mark stations offline that missed their heartbeats.
    "stations-mark-offline": {"task": "stations.tasks.stations_mark_offline", "schedule": 60.0},
    # Every hour: prune the OCPP message log past its retention.
    # Daily, PostgreSQL only: next months' partitions of meter samples and the message log,
    # months past their retention dropped (cpo.lib.partitions).
    "partitions-maintain": {"task": "cpo.tasks.partitions_maintain", "schedule": 86400.0},
    "stations-prune-message-log": {
        "task": "stations.tasks.message_log_prune",
        "schedule": 3600.0,
    },
    # Every minute: expire commands for stations offline past the command's expiry, and fail
    # job attempts past their timeout.
    "stations-commands-expire": {
        "task": "stations.commands.tasks.commands_expire",
        "schedule": 60.0,
    },
    # Every ENERGY_PASS_SECONDS: reallocate every energy-managed site (stale external limits
    # fall to their fail-safe, profiles are refreshed before their dead-man period ends).
    "stations-energy-pass": {
        "task": "stations.energy.tasks.energy_pass",
        "schedule": ENERGY_PASS_SECONDS,
    },
    # Every 10 seconds: partner commands past their deadline get their TIMEOUT result.
    "roaming-commands-timeout": {
        "task": "roaming.tasks.roaming_commands_timeout",
        "schedule": 10.0,
    },
    # Every 6 hours: ask stations whose certificate of ours ends soon for a new CSR.
    "stations-certificates-renew": {
        "task": "stations.commands.tasks.certificates_renew",
        "schedule": 6 * 3600.0,
    },
    # Every 15 minutes: open new billing periods and close the ones that have ended.
    "billing-close-due-periods": {
        "task": "billing.tasks.billing_periods_close_due",
        "schedule": 900.0,
    },
    # Every 10 minutes: rate ended sessions that have no CDR yet (a lost task, a failure worth
    # another try), however old.
    "billing-cdrs-create-missing": {
        "task": "billing.tasks.cdrs_create_missing",
        "schedule": 600.0,
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # Upload tokens travel in URLs; no log line keeps one (Django logs the path of a 4xx).
    "filters": {"scrub_tokens": {"()": "cpo.lib.log_scrub.ScrubTokens"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["scrub_tokens"],
        }
    },
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {
        "ocpp": {"level": "WARNING"},
        "django.channels.server": {"level": "WARNING"},
    },
}
