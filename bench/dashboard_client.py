"""A Django test client for the benchmarks: the real app, a throwaway SQLite, a superuser."""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from tests.redis_server import free_port

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
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "daphne"), "-v", "0", "-b", "127.0.0.1",
             "-p", str(port), "dashboard.asgi:application"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, port
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"daphne did not answer: {log.read_text()}") from None
            time.sleep(0.05)
