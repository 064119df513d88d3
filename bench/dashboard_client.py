"""A Django test client for the benchmarks: the real app, a throwaway SQLite, a superuser."""

from __future__ import annotations

import atexit
import os
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Any

from tests import daphne

ROOT = Path(__file__).resolve().parents[1]


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


def http_login(base: str, username: str, password: str) -> tuple[Any, str]:
    """Log in to a running dashboard through its login form, as a browser does: (an urllib
    opener that keeps the session's cookies, the session ID)."""
    import http.cookiejar
    import re
    from urllib.parse import urlencode
    from urllib.request import HTTPCookieProcessor, Request, build_opener

    jar = http.cookiejar.CookieJar()
    opener = build_opener(HTTPCookieProcessor(jar))
    page = opener.open(f"{base}/login/", timeout=30).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    if token is None:
        raise RuntimeError("no csrfmiddlewaretoken on /login/")
    body = urlencode({"username": username, "password": password,
                      "csrfmiddlewaretoken": token.group(1)}).encode()
    opener.open(Request(f"{base}/login/", data=body, headers={"Referer": f"{base}/login/"}),
                timeout=30).read()
    for cookie in jar:
        if cookie.name == "sessionid":
            return opener, cookie.value
    raise RuntimeError("login did not set a sessionid cookie")

def start_daphne(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Daphne serving the dashboard with env on a free port, its output in log: (it, port)."""
    process, port = daphne.spawn(env, log)
    daphne.wait_for(process, port, log, timeout=30)
    return process, port
