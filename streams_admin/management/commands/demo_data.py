"""python manage.py demo_data [--traffic]: seed demo streams, optionally keep publishing."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from streams_admin import demo
from streams_admin.redis import client


class Command(BaseCommand):
    help = "Create the demo streams that are missing; --traffic keeps publishing events."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--traffic", action="store_true", help="publish events until stopped")
        parser.add_argument("--rate", type=float, default=5.0, help="events per second")

    def handle(self, *args: object, traffic: bool, rate: float, **options: object) -> None:
        r = client()
        made = demo.seed(r)
        self.stdout.write(f"Demo data: created {len(made)} streams" if made
                          else "Demo data: already there")
        if traffic:
            self.stdout.write(f"Publishing demo traffic at {rate}/s (Ctrl-C stops)")
            demo.traffic(r, rate)
