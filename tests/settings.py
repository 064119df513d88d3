"""The project's settings, with what a test run needs: a key, and fast password hashing."""

import os

os.environ.setdefault("SECRET_KEY", "tests-only")

from dashboard.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# The suite points REDIS_URL at its own redis-server; this default fails fast if one forgets.
REDIS_URL = "redis://127.0.0.1:1/0"
