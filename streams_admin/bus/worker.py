"""A consumer process: import handler modules, consume until SIGTERM/SIGINT, stop gracefully.

    python -m streams_admin.bus.worker --group agent-group --name agent-1 handlers.module
    python manage.py bus_worker --group agent-group --name agent-1 handlers.module
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence

from prometheus_client import start_http_server

from streams_admin.bus.bus import EventBus

FIELDS = ("event_id", "correlation_id", "entry_id")


class JsonFormatter(logging.Formatter):
    """One JSON object a line, with the event's ids when the record has them."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": self.formatTime(record), "level": record.levelname,
                "logger": record.name, "message": record.getMessage()}
        line.update({k: getattr(record, k) for k in FIELDS if getattr(record, k, None)})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Consume events with the handlers of some modules.")
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("modules", nargs="+", help="modules whose @event_bus.subscribe handlers run")
    p.add_argument("--group", default="agent-group", help="consumer group")
    p.add_argument("--name", default=None, help="consumer name (default: host-pid)")
    p.add_argument("--redis-url", default=None, help="default: $REDIS_URL")
    p.add_argument("--prefix", default=None, help="default: $BUS_PREFIX or agent:stream:")
    p.add_argument("--max-in-flight", type=int, default=None)
    p.add_argument("--metrics-port", type=int, default=None, help="serve /metrics on this port")
    p.add_argument("--log-format", choices=("json", "text"), default="json")


def configure_logging(fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


def load(modules: Sequence[str]) -> None:
    sys.path.insert(0, os.getcwd())  # handler modules are usually the service's own
    for module in modules:
        importlib.import_module(module)


async def run_worker(bus: EventBus, group: str, name: str,
                     metrics_port: int | None = None) -> None:
    """Consume until SIGTERM or SIGINT, then finish running handlers and flush acks."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if metrics_port is not None:
        start_http_server(metrics_port, registry=bus.registry)
    consumer = asyncio.Task(bus.start_consumer(group, name), loop=loop, eager_start=True)
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({consumer, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if stop.is_set():
        logging.getLogger("streams_admin.bus").info("stopping consumer %s", name)
        await bus.stop_consumer()
    stopping.cancel()
    try:
        await consumer
    finally:
        await bus.aclose()


def run(options: argparse.Namespace, bus: EventBus | None = None) -> None:
    from streams_admin.bus import event_bus

    bus = bus or event_bus
    configure_logging(options.log_format)
    bus.configure(**{k: v for k, v in {"redis_url": options.redis_url, "prefix": options.prefix,
                                       "max_in_flight": options.max_in_flight}.items() if v})
    load(options.modules)
    name = options.name or f"{socket.gethostname()}-{os.getpid()}"
    asyncio.run(run_worker(bus, options.group, name, options.metrics_port))


if __name__ == "__main__":
    run(parser().parse_args())
