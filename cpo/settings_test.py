"""Settings for the test suite: the production settings with a separate data directory.

The data directory is set before the base settings are read, so that the test database file
and the embedded Redis socket never collide with a running `make run`.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("CPO_DATA_DIR", str(Path(__file__).resolve().parent.parent / "var" / "test"))

from cpo.settings import *  # noqa: E402,F403

# Hashing is not what tests measure.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = "cpotest"  # noqa: F405
# Throttle counters in process memory, emptied before every test (tests/conftest.py).
CACHES["throttle"] = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}  # noqa: F405

# Every live server of the suite authenticates from 127.0.0.1 against one Redis, and many tests
# try wrong passwords on purpose: the brute-force limits (stations.admission) would delay and
# then refuse the whole suite. The tests of those limits start servers that set them low.
OCPP_AUTH_FREE_FAILURES = envint("OCPP_AUTH_FREE_FAILURES", 10_000)  # noqa: F405
OCPP_AUTH_LOCKOUT_FAILURES = envint("OCPP_AUTH_LOCKOUT_FAILURES", 10_000)  # noqa: F405
