"""manage.py sampler: records the history of every target (README "History").

Run one per deployment; more are harmless (only the lease holder samples, the others stand by
and take over when it stops). `./bin/dashboard` and docker-compose start it.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from streams_admin.trends.sampler import Sampler


class Command(BaseCommand):
    help = "Samples every target every SAMPLE_INTERVAL into the history (one per deployment)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=int, help="seconds (default: SAMPLE_INTERVAL)")
        parser.add_argument("--once", action="store_true", help="one cycle, then exit")

    def handle(self, *args: Any, **options: Any) -> None:
        sampler = Sampler(options["interval"])
        if options["once"]:
            held = sampler.cycle(int(time.time()))
            self.stdout.write("sampled" if held else "standing by: another sampler holds it")
            return
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        self.stdout.write(f"Sampling every {sampler.interval} s as {sampler.holder}")
        sampler.run(stop)
