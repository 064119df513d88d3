"""A Django test client for the benchmarks: the real app, a throwaway SQLite, a superuser."""

from __future__ import annotations

import atexit
import os
import tempfile
import warnings
from typing import Any


def django_client(url: str) -> tuple[Any, Any]:
    """(client logged in as a superuser, that user), pointed at the Redis at url."""
    db = tempfile.mkstemp(suffix=".sqlite3")[1]
    atexit.register(os.unlink, db)
    os.environ.update(
        SECRET_KEY="bench",
        DJANGO_SETTINGS_MODULE="dashboard.settings",
        REDIS_URL=url,
        ALLOWED_HOSTS="testserver",
        LOG_LEVEL="WARNING",
        DATABASE_URL=f"sqlite:///{db}",
    )
    import django

    warnings.filterwarnings("ignore", message="No directory at")  # no collectstatic needed
    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench")
    client = Client()
    client.force_login(user)
    return client, user
