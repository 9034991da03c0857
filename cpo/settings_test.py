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
