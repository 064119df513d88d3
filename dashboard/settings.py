"""Settings, all from the environment. See README "Configuration"."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF, UNSAFE_INLINE

from streams_admin.bus.connect import checked, options_from_env

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY") or ("dev-only-insecure-key" if DEBUG else "")
if not SECRET_KEY:
    raise RuntimeError("Set SECRET_KEY (or DEBUG=1 for local development).")
ALLOWED_HOSTS = [h for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "channels",
    "axes",
    "csp",
    "streams_admin",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "streams_admin.middleware.TargetMiddleware",  # /t/NAME/ off the path before CommonMiddleware
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "streams_admin.middleware.RedisUnavailableMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks: it turns a lockout into a page
]

ROOT_URLCONF = "dashboard.urls"
ASGI_APPLICATION = "dashboard.asgi.application"
WSGI_APPLICATION = None

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
                "streams_admin.context.permissions",
                "streams_admin.context.targets",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}", conn_max_age=60
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"  # not under the script prefix, which /t/NAME/ pages extend
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True  # serves static files under Daphne without collectstatic

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out login before the rest
    "django.contrib.auth.backends.ModelBackend",
]
# Login throttling. Failures count per username *and* address together: a guesser is locked
# out of that account from that address, while the real admin, from another address, can
# still log in (locking by username alone would let anyone lock the admin out). Many usernames
# from one address are not capped; ./manage.py axes_reset lifts every lockout.
AXES_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "10"))
AXES_COOLOFF_TIME = timedelta(minutes=float(os.environ.get("LOGIN_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_LOCKOUT_CALLABLE = "streams_admin.login.locked_out"
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False  # no "AXES: BEGIN" banner on every manage.py command; lockouts still logged
# Behind a proxy every try comes from the proxy's address: count by the one it forwards.
TRUST_PROXY_FORWARDED_FOR = env_bool("TRUST_PROXY_FORWARDED_FOR", False)
AXES_CLIENT_IP_CALLABLE = "streams_admin.login.client_address"

# Scripts only from our own files (no inline script, no eval); inline styles are allowed (htmx
# injects its indicator style, templates set widths). 'self' covers the same-origin websocket.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "connect-src": [SELF],
        "img-src": [SELF, "data:"],
        "frame-ancestors": [NONE],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
    }
}

# Off by default so that http://127.0.0.1 works; turn on behind TLS (README "Configuration").
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0"))
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
if env_bool("TRUST_PROXY_TLS_HEADER", False):  # only behind a proxy that sets it, always
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "streams_admin:overview"
LOGOUT_REDIRECT_URL = "login"

# Streams Admin's own options; the app reads them through streams_admin.conf at call time.
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# A TOML file of named targets (README "Configuration"); unset: REDIS_URL is the one target.
STREAMS_ADMIN_TARGETS = os.environ.get("STREAMS_ADMIN_TARGETS", "")
# Credentials and TLS files from REDIS_USERNAME, REDIS_PASSWORD, REDIS_TLS_CA, REDIS_TLS_CERT,
# REDIS_TLS_KEY, REDIS_TLS_VERIFY, REDIS_SENTINEL_PASSWORD (README "Connecting to Redis").
REDIS_OPTIONS = options_from_env(os.environ)
checked(REDIS_URL, REDIS_OPTIONS)  # TLS files with a redis:// URL: refused now, not ignored
STREAMS_ADMIN = {
    "KEY_PATTERN": os.environ.get("STREAMS_ADMIN_KEY_PATTERN", "*"),
    "SOCKET_TIMEOUT": float(os.environ.get("STREAMS_ADMIN_REDIS_TIMEOUT", "2")),
    "CONNECT_TIMEOUT": float(os.environ.get("STREAMS_ADMIN_REDIS_CONNECT_TIMEOUT", "1")),
    "READ_ONLY": env_bool("STREAMS_ADMIN_READ_ONLY", False),
    "BUS_PREFIX": os.environ.get("BUS_PREFIX", "agent:stream:"),
    "OVERVIEW_FRESHNESS": float(os.environ.get("STREAMS_ADMIN_OVERVIEW_FRESHNESS", "2")),
    # GET /metrics (README "Prometheus"): a Bearer token, or addresses allowed without it.
    "METRICS_TOKEN": os.environ.get("STREAMS_ADMIN_METRICS_TOKEN", ""),
    "METRICS_ALLOW": os.environ.get("STREAMS_ADMIN_METRICS_ALLOW", ""),
    "METRICS_CONSUMERS": env_bool("STREAMS_ADMIN_METRICS_CONSUMERS", True),
    "METRICS_MAX_STREAMS": int(os.environ.get("STREAMS_ADMIN_METRICS_MAX_STREAMS", "1000")),
    # Alerts (README "Alerts"): the dashboard's address, for the links in notifications.
    "PUBLIC_URL": os.environ.get("STREAMS_ADMIN_PUBLIC_URL", ""),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
