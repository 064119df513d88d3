"""python manage.py bus_worker --group G --name N handlers.module: a bus consumer process.

The worker itself lives in streams_admin.bus.worker (no Django); this only adds the
project's REDIS_URL setting as the default Redis.
"""

from __future__ import annotations

import argparse
import os

from django.conf import settings
from django.core.management.base import BaseCommand

from streams_admin.bus import worker


class Command(BaseCommand):
    help = "Consume bus events with the handlers of the given modules; stops on SIGTERM."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        worker.add_arguments(parser)

    def handle(self, *args: object, **options: object) -> None:
        namespace = argparse.Namespace(**options)
        if not namespace.redis_url and not os.environ.get("REDIS_URL"):
            namespace.redis_url = getattr(settings, "REDIS_URL", None)
        worker.run(namespace)
