"""Bulk actions: ack-all and claim-all on 100,000 pending entries, dashboard vs raw redis-py.

The issue's target: "Ack-all and claim-all on 100,000 pending entries: throughput >= 0.5x the
same operation as raw pipelined XACK/XCLAIM in redis-py; no single request runs unbounded
(chunked, with progress shown for long operations)."

One stream of 100,000 small envelope entries, group `workers`, all 100,000 pending for one
consumer (`worker-1`, never acked). Before every measured run the stream key is put back
with RESTORE REPLACE from a DUMP taken after seeding (same entries, same group, same PEL).

Dashboard runs go through Django's test client like a browser: POST the action's form; while
the answer is the "Working…" page (progress.html) POST its `continue` form again (every
hidden input: the same fields, `after` and `done_so_far`) until a 302 says it is done.

    ack-all         POST .../ack-matching/  confirm=workers (no consumer or idle filter)
                    vs raw: XPENDING - + COUNT 1000 scan (exclusive cursor), then XACK of
                    1000 IDs a command, all in one pipeline
    claim-all group POST .../claim-idle/    from="" (XAUTOCLAIM) to=worker-2 min_idle=0
    claim-all from  POST .../claim-idle/    from=worker-1 to=worker-2 min_idle=0
                    vs raw: the same XPENDING scan (with the consumer for "from"), then
                    XCLAIM ... 0 <1000 IDs> JUSTID a command, all in one pipeline

Side references, not part of the target: the operation layer called directly (no HTTP, no
template; shows what Django costs) and, for the group claim, a raw XAUTOCLAIM loop.

Each round runs every case once, in an order that alternates between rounds (dashboard first
in odd rounds, raw first in even ones); medians over the rounds. Correctness is checked after
every run (PEL empty / all 100,000 owned by worker-2) and the script exits 1 if it is not,
or if a dashboard request ran without the "Working…" loop ending. Times are reported, not
asserted.

    .venv/bin/python bench/actions.py [--rounds 3] [--entries 100000]
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.dashboard_client import django_client  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

KEY, GROUP, HOLDER, TARGET = "bench:actions", "workers", "worker-1", "worker-2"
BATCH = 1000  # raw redis-py: IDs per XPENDING page and per XACK / XCLAIM command
failures: list[str] = []


# --- data --------------------------------------------------------------------------------


def envelope(i: int) -> dict[str, str]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "task.created",
        "timestamp": f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}.000000+00:00",
        "data": json.dumps({"task_id": f"task-{i}", "priority": "high", "payload": {}}),
    }


def seed(r: redis.Redis, count: int) -> bytes:
    """The stream, its group, `count` entries pending for HOLDER; returns DUMP of the key."""
    for start in range(0, count, 10_000):
        pipe = r.pipeline(transaction=False)
        for i in range(start, min(count, start + 10_000)):
            pipe.xadd(KEY, envelope(i))
        pipe.execute()
    r.xgroup_create(KEY, GROUP, id="0")
    for _ in range(0, count, 10_000):
        r.xreadgroup(GROUP, HOLDER, {KEY: ">"}, count=10_000)
    r.xgroup_createconsumer(KEY, GROUP, TARGET)
    return r.dump(KEY)


# --- raw redis-py ------------------------------------------------------------------------


def pending_ids(r: redis.Redis, consumer: str | None = None) -> list[bytes]:
    """Every pending ID, XPENDING COUNT BATCH at a time, from an exclusive cursor."""
    ids: list[bytes] = []
    start = "-"
    while True:
        rows = r.xpending_range(KEY, GROUP, start, "+", BATCH, consumername=consumer)
        if not rows:
            return ids
        ids += [row["message_id"] for row in rows]
        start = "(" + ids[-1].decode()


def raw_ack(r: redis.Redis) -> int:
    ids = pending_ids(r)
    pipe = r.pipeline(transaction=False)
    for start in range(0, len(ids), BATCH):
        pipe.xack(KEY, GROUP, *ids[start : start + BATCH])
    return sum(pipe.execute())


def raw_claim(consumer: str | None) -> Callable[[redis.Redis], int]:
    def run(r: redis.Redis) -> int:
        ids = pending_ids(r, consumer)
        pipe = r.pipeline(transaction=False)
        for start in range(0, len(ids), BATCH):
            pipe.xclaim(KEY, GROUP, TARGET, 0, ids[start : start + BATCH], justid=True)
        return sum(len(got) for got in pipe.execute())

    return run


def whole(response: object, **options: object) -> object:
    return response


def raw_autoclaim(r: redis.Redis) -> int:
    """The commands the dashboard's whole-group claim sends. redis-py's parser for XAUTOCLAIM
    JUSTID returns only the IDs and drops the cursor, so the reply is read unparsed here."""
    done, start = 0, "0-0"
    r.set_response_callback("XAUTOCLAIM", whole)
    while True:
        reply = r.xautoclaim(KEY, GROUP, TARGET, 0, start_id=start, count=BATCH, justid=True)
        start, done = reply[0].decode(), done + len(reply[1])
        if start == "0-0":
            return done


# --- the dashboard -----------------------------------------------------------------------


FORM_RE = re.compile(r'<form[^>]*id="continue"[^>]*>(.*?)</form>', re.S)
INPUT_RE = re.compile(r'<input type="hidden" name="([^"]*)" value="([^"]*)">')
TOTAL_RE = re.compile(r"<strong>([\d,]+)</strong> done so far")
BANNER_RE = re.compile(r'<div class="banner (?:ok|bad)" role="status">(.*?)</div>', re.S)


@dataclass
class Run:
    seconds: float
    count: int  # entries the run reported done (raw: Redis' replies; dashboard: progress)
    requests: int = 0
    request_seconds: list[float] = field(default_factory=list)
    progress: list[int] = field(default_factory=list)  # "N done so far" on each Working page
    message: str = ""  # the banner shown after the final redirect
    finished: bool = True  # False: stopped by the bench (cursor did not move)
    holders: dict[str, int] = field(default_factory=dict)  # pending per consumer afterwards
    stats_end: Counter[str] | None = None  # commandstats when the measured part ended
    commands: Counter[str] = field(default_factory=Counter)


def follow(r: redis.Redis, client, path: str, fields: dict[str, str]) -> Run:
    """POST like the browser: while the answer is the Working… page, submit its form.
    A browser would go on forever when the cursor does not move; the bench stops there."""
    data, times, progress = dict(fields), [], []
    t0 = time.perf_counter()
    while True:
        cursor = data.get("after")
        s = time.perf_counter()
        response = client.post(path, data)
        times.append(time.perf_counter() - s)
        if response.status_code == 302:
            break
        body = response.content.decode()
        form = FORM_RE.search(body)
        if response.status_code != 200 or form is None or "Working…" not in body:
            raise SystemExit(
                f"{path}: answered {response.status_code} without the progress form:\n{body[:2000]}"
            )
        data = {n: html.unescape(v) for n, v in INPUT_RE.findall(form[1])}
        progress.append(int(TOTAL_RE.search(body)[1].replace(",", "")))
        if data.get("after") == cursor or len(times) >= 1000:
            return Run(
                time.perf_counter() - t0,
                progress[-1],
                len(times),
                times,
                progress,
                f"(stopped by the bench: cursor {cursor!r} did not move)",
                False,
            )
    seconds = time.perf_counter() - t0
    stats_end = commandstats(r)
    # Untimed: the page the redirect leads to, for the message the operator is shown.
    page = client.get(response["Location"]).content.decode()
    shown = " | ".join(html.unescape(m).strip() for m in BANNER_RE.findall(page))
    # The last request's own count is only in its banner ("Acknowledged 1,000 entries.").
    last = re.search(r"(?:Acknowledged|Claimed) ([\d,]+) entr", shown)
    total = int(data.get("done_so_far", 0)) + (int(last[1].replace(",", "")) if last else 0)
    return Run(seconds, total, len(times), times, progress, shown, stats_end=stats_end)


def dashboard(client, action: str, fields: dict[str, str]) -> Callable[[redis.Redis], Run]:
    path = f"/streams/{KEY}/groups/{GROUP}/{action}/"
    return lambda r: follow(r, client, path, fields)


def operation(user, kind: str) -> Callable[[redis.Redis], Run]:
    """The operation layer alone, cursor loop as the views do it (audit rows included)."""
    from streams_admin.operations import Actor
    from streams_admin.operations import pending as ops

    actor = Actor(user, "127.0.0.1")

    def run(r: redis.Redis) -> Run:
        after, total, times = None, 0, []
        t0 = time.perf_counter()
        while True:
            cursor = after
            s = time.perf_counter()
            if kind == "ack":
                out = ops.ack_matching(
                    actor,
                    KEY.encode(),
                    GROUP.encode(),
                    consumer=None,
                    min_idle_ms=None,
                    after=after,
                )
            else:
                source = HOLDER.encode() if kind == "claim-from" else None
                out = ops.claim_idle(
                    actor,
                    KEY.encode(),
                    GROUP.encode(),
                    source=source,
                    to=TARGET.encode(),
                    min_idle_ms=0,
                    after=after,
                )
            times.append(time.perf_counter() - s)
            if not out.ok:
                raise SystemExit(f"operation {kind}: {out.message}")
            total += out.count
            if not out.unfinished:
                break
            after = out.cursor
            if after == cursor or len(times) >= 1000:
                return Run(
                    time.perf_counter() - t0,
                    total,
                    len(times),
                    times,
                    message=f"(stopped by the bench: cursor {cursor!r} did not move)",
                    finished=False,
                )
        return Run(time.perf_counter() - t0, total, len(times), times, message=out.message)

    return run


# --- measuring ---------------------------------------------------------------------------


def commandstats(r: redis.Redis) -> Counter[str]:
    return Counter(
        {k.removeprefix("cmdstat_"): v["calls"] for k, v in r.info("commandstats").items()}
    )


def measure(r: redis.Redis, snapshot: bytes, do: Callable[[redis.Redis], Run | int]) -> Run:
    r.restore(KEY, 0, snapshot, replace=True)
    before = commandstats(r)
    t0 = time.perf_counter()
    got = do(r)
    seconds = time.perf_counter() - t0
    after = commandstats(r)
    run = got if isinstance(got, Run) else Run(seconds, got)
    run.commands = +((run.stats_end or after) - before)
    run.commands.subtract({"info": 1})  # the snapshot's own INFO
    run.commands = +run.commands
    return run


def check(name: str, r: redis.Redis, run: Run, entries: int, kind: str) -> None:
    summary = r.xpending(KEY, GROUP)
    holders = run.holders = {c["name"].decode(): c["pending"] for c in summary["consumers"]}
    right = summary["pending"] == 0 if kind == "ack" else holders == {TARGET: entries}
    if not right:
        failures.append(f"{name}: after the run pending={summary['pending']}, holders={holders}")
    if run.count != entries:
        failures.append(f"{name}: reported {run.count:,} entries done, expected {entries:,}")


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # ack, claim-group, claim-from
    side: str  # dashboard, raw, op (operation layer), ref (other reference)
    do: Callable[[redis.Redis], Run | int]
    once: bool = False  # measured in the first round only (it does not finish: see report)
    patched: bool = False  # the app's XAUTOCLAIM reply kept whole (a bench-only patch)


def patched(do: Callable[[redis.Redis], Run]) -> Callable[[redis.Redis], Run]:
    """Run `do` with the app's client answering XAUTOCLAIM unparsed ([cursor, ids, deleted]),
    which is what streams_admin.operations.pending._autoclaim expects; restored afterwards."""

    def run(r: redis.Redis) -> Run:
        from streams_admin.redis import client

        app = client()
        old = app.response_callbacks.get("XAUTOCLAIM")
        app.set_response_callback("XAUTOCLAIM", whole)
        try:
            return do(r)
        finally:
            app.response_callbacks["XAUTOCLAIM"] = old

    return run


def cases(client, user) -> list[Case]:
    claim = {"to": TARGET, "min_idle": "0"}
    group = dashboard(client, "claim-idle", {"from": "", **claim})
    return [
        Case(
            "ack-all: dashboard (ack-matching)",
            "ack",
            "dashboard",
            dashboard(client, "ack-matching", {"confirm": GROUP}),
        ),
        Case("ack-all: raw XPENDING + pipelined XACK", "ack", "raw", raw_ack),
        Case("ack-all: operation layer, no HTTP", "ack", "op", operation(user, "ack")),
        Case("claim-all group: dashboard as shipped", "claim-group", "dashboard", group, once=True),
        Case(
            "claim-all group: operation layer as shipped",
            "claim-group",
            "op",
            operation(user, "claim-group"),
            once=True,
        ),
        Case(
            "claim-all group: dashboard, XAUTOCLAIM reply patched",
            "claim-group",
            "dashboard",
            patched(group),
            patched=True,
        ),
        Case(
            "claim-all group: raw XPENDING + pipelined XCLAIM",
            "claim-group",
            "raw",
            raw_claim(None),
        ),
        Case(
            "claim-all group: operation layer, reply patched",
            "claim-group",
            "op",
            patched(operation(user, "claim-group")),
            patched=True,
        ),
        Case("claim-all group: raw XAUTOCLAIM loop", "claim-group", "ref", raw_autoclaim),
        Case(
            "claim-all from worker-1: dashboard",
            "claim-from",
            "dashboard",
            dashboard(client, "claim-idle", {"from": HOLDER, **claim}),
        ),
        Case(
            "claim-all from worker-1: raw XPENDING + pipelined XCLAIM",
            "claim-from",
            "raw",
            raw_claim(HOLDER),
        ),
        Case(
            "claim-all from worker-1: operation layer, no HTTP",
            "claim-from",
            "op",
            operation(user, "claim-from"),
        ),
    ]


def rounds_of(
    r: redis.Redis, snapshot: bytes, all_cases: list[Case], rounds: int, entries: int
) -> dict[str, list[Run]]:
    runs: dict[str, list[Run]] = {c.name: [] for c in all_cases}
    for n in range(rounds):
        order = all_cases if n % 2 == 0 else list(reversed(all_cases))
        for case in order:
            if case.once and n:
                continue
            run = measure(r, snapshot, case.do)
            check(case.name, r, run, entries, case.kind)
            if not run.finished:
                failures.append(
                    f"{case.name}: did not finish; {run.requests} requests/calls, "
                    f"{run.message}, progress shown {run.progress}"
                )
            runs[case.name].append(run)
        print(f"  round {n + 1}/{rounds} done", flush=True)
    return runs


# --- reporting ---------------------------------------------------------------------------


def rate(runs: list[Run], entries: int) -> float:
    return entries / statistics.median(r.seconds for r in runs)


def report(
    all_cases: list[Case], runs: dict[str, list[Run]], entries: int, budget: int, chunk: int
) -> None:
    print(f"\n{'':58} {'median s':>8} {'entries/s':>10} {'reqs':>5} {'max req s':>9}")
    for case in all_cases:
        rs = runs[case.name]
        reqs = sorted({r.requests for r in rs})
        longest = max((max(r.request_seconds) for r in rs if r.request_seconds), default=None)
        speed = (
            f"{rate(rs, entries):10,.0f}" if all(r.finished for r in rs) else f"{'unfinished':>10}"
        )
        print(
            f"{case.name:58} {statistics.median(r.seconds for r in rs):8.3f} {speed} "
            f"{'/'.join(map(str, reqs)) if rs[0].requests else '':>5} "
            f"{'' if longest is None else f'{longest:.3f}':>9}"
        )
    print("\nRedis commands per operation (INFO commandstats delta, first run):")
    for case in all_cases:
        first = runs[case.name][0]
        print(
            f"  {case.name}: " + ", ".join(f"{k} {v:,}" for k, v in sorted(first.commands.items()))
        )
    print(
        f"\nBudget per request: ACTION_BUDGET {budget:,} entries in ACTION_CHUNK {chunk:,} "
        f"chunks -> at most {-(-budget // chunk)} chunk loops per request"
    )
    print("\nRatios dashboard / raw (median throughput; target >= 0.5), per round in brackets:")
    for kind in ("ack", "claim-group", "claim-from"):
        mine = [c for c in all_cases if c.kind == kind]
        raw = runs[next(c.name for c in mine if c.side == "raw")]
        for dash_case in (c for c in mine if c.side == "dashboard"):
            op_case = next(
                c
                for c in mine
                if c.side == "op" and c.patched == dash_case.patched and c.once == dash_case.once
            )
            dash, op = runs[dash_case.name], runs[op_case.name]
            label = f"{kind}{' (patched)' if dash_case.patched else ''}"
            longest = max(max(r.request_seconds) for r in dash)
            if not all(r.finished for r in dash):
                print(
                    f"  {label:24} FAIL: did not finish; stopped after {dash[0].requests} "
                    f"requests ({dash[0].seconds:.1f} s, longest request {longest:.2f} s); "
                    f"progress shown {dash[0].progress}; pending afterwards {dash[0].holders}"
                )
                print(
                    f"  {'':24} Redis commands: "
                    + ", ".join(f"{k} {v:,}" for k, v in sorted(dash[0].commands.items()))
                )
                continue
            ratio = rate(dash, entries) / rate(raw, entries)
            per_round = ", ".join(
                f"{b.seconds / a.seconds:.2f}" for a, b in zip(dash, raw, strict=True)
            )
            verdict = "PASS" if ratio >= 0.5 else "FAIL"
            print(
                f"  {label:24} dashboard/raw {ratio:.2f} [{per_round}] {verdict};  "
                f"operation-layer/raw {rate(op, entries) / rate(raw, entries):.2f};  "
                f"dashboard/operation-layer {rate(dash, entries) / rate(op, entries):.2f}"
            )
            print(
                f"  {'':24} requests {dash[0].requests}, longest request {longest:.3f} s, "
                f"progress shown {dash[0].progress}"
            )
            print(f"  {'':24} final banner: {dash[0].message!r}")
            if ratio < 0.5:
                failures.append(f"{label}: dashboard/raw throughput {ratio:.2f} < 0.5")
            if dash[0].requests < 2 and entries > budget:
                failures.append(f"{label}: one request handled {entries:,} > budget {budget:,}")
        ref = [c for c in mine if c.side == "ref"]
        for c in ref:
            print(
                f"  {'':24} {c.name}: {rate(runs[c.name], entries) / rate(raw, entries):.2f}"
                f" x raw XCLAIM"
            )


def audit_summary() -> None:
    from django.db.models import Count, Max, Sum

    from streams_admin.models import AuditEntry

    print("\nAudit rows written (all runs, dashboard and operation layer):")
    for row in (
        AuditEntry.objects.values("action")
        .annotate(rows=Count("id"), entries=Sum("id_count"), most=Max("id_count"))
        .order_by("action")
    ):
        print(
            f"  {row['action']}: {row['rows']} rows, {row['entries']:,} entries, "
            f"at most {row['most']:,} in one row"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--entries", type=int, default=100_000)
    args = parser.parse_args()
    server = RedisServer().start()
    try:
        started = time.perf_counter()
        r = redis.Redis.from_url(server.url)
        t0 = time.perf_counter()
        snapshot = seed(r, args.entries)
        info = r.info()
        print(
            f"redis-server {info['redis_version']} on port {server.port}, "
            f"{os.cpu_count()} CPUs, redis-py {redis.__version__}; seeded "
            f"{args.entries:,} entries all pending for {HOLDER} in "
            f"{time.perf_counter() - t0:.1f}s; DUMP {len(snapshot) / 1e6:.1f} MB"
        )
        t0 = time.perf_counter()
        r.restore(KEY, 0, snapshot, replace=True)
        print(
            f"RESTORE REPLACE (done before every run, untimed): "
            f"{(time.perf_counter() - t0) * 1000:.0f} ms"
        )
        client, user = django_client(server.url)
        from streams_admin import conf

        budget, chunk = conf.get("ACTION_BUDGET"), conf.get("ACTION_CHUNK")
        all_cases = cases(client, user)
        for case in all_cases:  # warm-up: imports, templates, connections
            if case.once:
                continue
            run = measure(r, snapshot, case.do)
            check(case.name, r, run, args.entries, case.kind)
        print(f"warm-up done; {args.rounds} rounds, order alternating", flush=True)
        runs = rounds_of(r, snapshot, all_cases, args.rounds, args.entries)
        report(all_cases, runs, args.entries, budget, chunk)
        audit_summary()
        print(f"\ntotal {time.perf_counter() - started:.0f}s")
    finally:
        server.stop()
    for failure in failures:
        print("FAIL:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
