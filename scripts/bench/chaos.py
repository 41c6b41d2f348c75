#!/usr/bin/env python3
"""Quire's chaos benchmark (issue 9): the production pipeline under worker kills and outages.

Run it through the wrapper, which starts a throwaway Postgres and installs moto:

    scripts/bench/chaos.sh            # the full benchmark, ~7 minutes
    scripts/bench/chaos.sh --short    # a ~1.5-minute smoke version for development
    scripts/bench/chaos.sh --help

What it does, all on loopback:

- moto (SQS + S3) behind a TCP proxy of this harness, which can black-hole it; a work queue
  with a dead-letter queue (maxReceiveCount 5), a versioned bucket;
- one api-server and two workers (SQS queue, S3 storage, QUIRE_VISIBILITY_TIMEOUT=10);
- phase 1: 1,000 reports are created by client threads, each POST with its own
  Idempotency-Key, while a worker is SIGKILLed every 2-4 s and restarted at once (~75 s);
- phase 2: Postgres is stopped (pg_ctl stop -m fast) for 10 s, then for 35 s, while a prober
  sends GET /reports/{id} and POST /reports every ~200 ms;
- phase 3: SQS and S3 are black-holed for 40 s (the proxy accepts connections and answers
  nothing), the prober still going;
- then every POST that got a 5xx or no answer is replayed with its Idempotency-Key (an
  `Idempotent-Replayed: true` answer proves the report existed: the 5xx was a lie), and the
  harness waits (bounded) for every accepted report to finish.

It prints accepted, completed, failed, cancelled, stuck, lost, duplicate uploads (object keys
with more than one version), 5xx answers, the slowest API answer during each outage, the
dead-letter queue's size, a TARGET MET / TARGET MISSED line, and the same figures as one
JSON line (`CHAOS_RESULT {...}`). It exits 0 whatever the figures: it is a benchmark.

Standard library only, plus boto3 (from moto's virtualenv) for setting up the queues and the
bucket and for reading them at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hashlib
import http.client
import itertools
import json
import os
import random
import re
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

TERMINAL = ("completed", "failed", "cancelled")
UNFINISHED = ("pending", "queued", "running")
PASSWORD = "correct horse battery staple"
REPORT_BODY = {"report_type": "profile", "format": "pdf"}
REGION = "us-east-1"
# Settings the engineer's fixes add; passed to every process (clap ignores unknown env vars).
NEW_SETTINGS = (
    "QUIRE_DB_ACQUIRE_TIMEOUT",
    "QUIRE_RESCUE_INTERVAL",
    "QUIRE_RESCUE_AFTER",
    "QUIRE_AWS_CONNECT_TIMEOUT",
    "QUIRE_AWS_READ_TIMEOUT",
    "QUIRE_AWS_OPERATION_TIMEOUT",
)

T0 = time.monotonic()
STOP = threading.Event()  # set on the way out: every loop of the harness ends on it
EVENTS_FILE = None
PRINT_LOCK = threading.Lock()


def now() -> float:
    return time.monotonic() - T0


def log(message: str, quiet: bool = False) -> None:
    """A timestamped line in events.log, and on stdout unless `quiet`."""
    line = f"[{now():7.1f}s] {message}"
    with PRINT_LOCK:
        if EVENTS_FILE is not None:
            EVENTS_FILE.write(line + "\n")
            EVENTS_FILE.flush()
        if not quiet:
            print(line, flush=True)


def sleep(seconds: float) -> None:
    """Sleeps, waking early when the harness is stopping."""
    if seconds > 0:
        STOP.wait(seconds)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- settings --------------------------------------------------------------------------


@dataclass
class Settings:
    reports: int
    users: int
    clients: int
    workers: int
    kill_seconds: float
    kill_min: float
    kill_max: float
    create_seconds: float
    pg_outages: list
    blackhole_seconds: float
    recovery_seconds: float
    drain_seconds: float
    probe_interval: float
    request_timeout: float
    answer_limit: float
    visibility_timeout: int
    pending_sweep_secs: int
    max_receive_count: int
    db_acquire_timeout: int
    rescue_interval: int
    rescue_after: int
    aws_connect_timeout: int
    aws_read_timeout: int
    aws_operation_timeout: int
    black_hole: str
    seed: int
    profile: str
    target_dir: str
    api_server: str | None
    worker: str | None
    moto_venv: str
    extra_env: dict
    short: bool


def parse_args(argv) -> Settings:
    p = argparse.ArgumentParser(
        prog="scripts/bench/chaos.sh",
        description="Quire's chaos benchmark (issue 9): 1,000 reports on Postgres + moto "
        "(SQS with a dead-letter queue, versioned S3) while workers are SIGKILLed, Postgres "
        "restarts twice and SQS/S3 are black-holed. Prints the figures and whether the "
        "target is met; always exits 0 once it ran.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--short", action="store_true",
                   help="a ~1.5-minute smoke version: 100 reports, 20 s of kills, Postgres "
                   "down 3 s and 8 s, a 10 s black hole (explicit flags still win)")
    p.add_argument("--reports", type=int, help="reports created in phase 1 [1000; --short 100]")
    p.add_argument("--kill-seconds", type=float,
                   help="how long workers are SIGKILLed at random [75; --short 20]")
    p.add_argument("--kill-interval", default="2,4",
                   help="seconds between two kills, MIN,MAX (uniform)")
    p.add_argument("--create-seconds", type=float,
                   help="phase 1 spreads the creations over this long [2/3 of --kill-seconds]")
    p.add_argument("--pg-outages", help="Postgres stop durations, comma-separated "
                   "[10,35; --short 3,8]")
    p.add_argument("--blackhole-seconds", type=float, help="SQS+S3 black hole [40; --short 10]")
    p.add_argument("--recovery-seconds", type=float,
                   help="calm time after each outage [15; --short 5]")
    p.add_argument("--drain-seconds", type=float,
                   help="longest wait for every accepted report to finish [180; --short 90]")
    p.add_argument("--black-hole", choices=("stall", "resume", "strand"), default="stall",
                   help="what the black hole does to connections: stall = connections open "
                   "at its start stall and resume after it, ones opened during it are never "
                   "answered (the issue's setup); resume = everything resumes after it (a "
                   "healed partition); strand = nothing it touched is ever answered (lost "
                   "connection state)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--users", type=int, default=16,
                   help="accounts the reports are spread over (sign-in allows 20 per "
                   "address and minute)")
    p.add_argument("--clients", type=int, default=16, help="concurrent creating clients")
    p.add_argument("--probe-interval", type=float, default=0.2)
    p.add_argument("--request-timeout", type=float, default=40.0,
                   help="client-side timeout of one API request, seconds")
    p.add_argument("--answer-limit", type=float, default=3.0,
                   help="target: no answer slower than this during an outage, seconds")
    p.add_argument("--visibility-timeout", type=int, default=10)
    p.add_argument("--pending-sweep-secs", type=int, default=5)
    p.add_argument("--max-receive-count", type=int, default=5,
                   help="the work queue's redrive policy: receives before the dead-letter "
                   "queue")
    # The reliability settings, in whole seconds; 0 leaves one out (the binary's default).
    p.add_argument("--db-acquire-timeout", type=int, default=2,
                   help="QUIRE_DB_ACQUIRE_TIMEOUT, seconds (0: not passed)")
    p.add_argument("--rescue-interval", type=int, default=5,
                   help="QUIRE_RESCUE_INTERVAL, seconds (0: not passed)")
    p.add_argument("--rescue-after", type=int, default=30,
                   help="QUIRE_RESCUE_AFTER, seconds (0: not passed); scaled down like the "
                   "visibility timeout, so a stranded report is rescued within the drain")
    p.add_argument("--aws-connect-timeout", type=int, default=2,
                   help="QUIRE_AWS_CONNECT_TIMEOUT, seconds (0: not passed)")
    p.add_argument("--aws-read-timeout", type=int, default=0,
                   help="QUIRE_AWS_READ_TIMEOUT, seconds (0: not passed)")
    p.add_argument("--aws-operation-timeout", type=int, default=10,
                   help="QUIRE_AWS_OPERATION_TIMEOUT, seconds (0: not passed)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="an extra (or overriding) environment variable for every Quire "
                   "process; repeatable")
    p.add_argument("--seed", type=int, help="random seed of the kills [random]")
    p.add_argument("--profile", choices=("auto", "debug", "release"), default="auto",
                   help="which build to run: auto = release when it exists and is newer "
                   "than debug, else debug")
    p.add_argument("--target-dir", default=os.environ.get("CARGO_TARGET_DIR") or
                   os.path.expanduser("~/.cache/quire/target"),
                   help="cargo's target directory")
    p.add_argument("--api-server", metavar="PATH",
                   help="run this api-server binary instead of the target directory's")
    p.add_argument("--worker", metavar="PATH",
                   help="run this worker binary instead of the target directory's")
    p.add_argument("--moto-venv", default=os.environ.get("QUIRE_MOTO_VENV") or
                   os.path.expanduser("~/.cache/quire/moto-venv"))
    a = p.parse_args(argv)

    def pick(value, full, short):
        return value if value is not None else (short if a.short else full)

    extra = {}
    for item in a.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            p.error(f"--env expects KEY=VALUE, got {item!r}")
        extra[key] = value
    kill_min, _, kill_max = a.kill_interval.partition(",")
    kill_seconds = pick(a.kill_seconds, 75.0, 20.0)
    outages = pick(a.pg_outages, "10,35", "3,8")
    s = Settings(
        reports=pick(a.reports, 1000, 100),
        users=max(1, a.users),
        clients=max(1, a.clients),
        workers=max(1, a.workers),
        kill_seconds=kill_seconds,
        kill_min=float(kill_min),
        kill_max=float(kill_max or kill_min),
        create_seconds=pick(a.create_seconds, kill_seconds * 2 / 3, kill_seconds * 2 / 3),
        pg_outages=[float(x) for x in outages.split(",") if x.strip()],
        blackhole_seconds=pick(a.blackhole_seconds, 40.0, 10.0),
        recovery_seconds=pick(a.recovery_seconds, 15.0, 5.0),
        drain_seconds=pick(a.drain_seconds, 180.0, 90.0),
        probe_interval=a.probe_interval,
        request_timeout=a.request_timeout,
        answer_limit=a.answer_limit,
        visibility_timeout=a.visibility_timeout,
        pending_sweep_secs=a.pending_sweep_secs,
        max_receive_count=a.max_receive_count,
        db_acquire_timeout=a.db_acquire_timeout,
        rescue_interval=a.rescue_interval,
        rescue_after=a.rescue_after,
        aws_connect_timeout=a.aws_connect_timeout,
        aws_read_timeout=a.aws_read_timeout,
        aws_operation_timeout=a.aws_operation_timeout,
        black_hole=a.black_hole,
        seed=a.seed if a.seed is not None else random.randrange(1 << 31),
        profile=a.profile,
        target_dir=a.target_dir,
        api_server=a.api_server,
        worker=a.worker,
        moto_venv=a.moto_venv,
        extra_env=extra,
        short=a.short,
    )
    if s.kill_min <= 0 or s.kill_max < s.kill_min:
        p.error("--kill-interval must be MIN,MAX with 0 < MIN <= MAX")
    return s


# ---- the black-hole proxy in front of moto ----------------------------------------------


class _Conn:
    __slots__ = ("never",)

    def __init__(self):
        self.never = False  # nothing on this connection is ever forwarded again


class BlackHoleProxy:
    """A TCP proxy to moto on its own asyncio loop and thread. With the hole open nothing
    is forwarded in either direction: new connections are accepted and never answered,
    open ones stall (see --black-hole for what happens to them after)."""

    def __init__(self, upstream_port: int, mode: str):
        self.upstream_port = upstream_port
        self.mode = mode
        self.hole = False
        self.conns: set = set()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="proxy", daemon=True)
        self.healed: asyncio.Event | None = None
        self.server = None
        self.port = 0
        self.stats = collections.Counter()

    def start(self) -> int:
        self.thread.start()
        return asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> int:
        self.healed = asyncio.Event()
        self.healed.set()
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    def set_hole(self, on: bool) -> None:
        asyncio.run_coroutine_threadsafe(self._set_hole(on), self.loop).result(10)

    async def _set_hole(self, on: bool) -> None:
        self.hole = on
        if on:
            self.healed.clear()
            if self.mode == "strand":
                for conn in self.conns:
                    conn.never = True
        else:
            self.healed.set()

    def stop(self) -> None:
        if not self.thread.is_alive():
            return

        async def close():
            if self.server is not None:
                self.server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        try:
            asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    async def _handle(self, reader, writer):
        conn = _Conn()
        self.conns.add(conn)
        self.stats["connections"] += 1
        upstream_writer = None
        try:
            if self.hole:
                self.stats["opened_in_hole"] += 1
                if self.mode == "resume":
                    await self.healed.wait()
                else:
                    conn.never = True
            if conn.never:
                # Accepted, never answered: read and drop until the client gives up.
                while await reader.read(65536):
                    pass
                return
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(
                    "127.0.0.1", self.upstream_port)
            except OSError:
                self.stats["upstream_refused"] += 1
                return
            await asyncio.gather(
                self._pump(reader, upstream_writer, conn),
                self._pump(upstream_reader, writer, conn),
            )
        except (asyncio.CancelledError, OSError):
            pass
        finally:
            self.conns.discard(conn)
            for w in (writer, upstream_writer):
                if w is not None:
                    try:
                        w.close()
                    except Exception:
                        pass

    async def _pump(self, src, dst, conn):
        try:
            while True:
                data = await src.read(65536)
                if not data:
                    break
                while self.hole and not conn.never:
                    if self.mode == "strand":
                        conn.never = True
                    else:
                        await self.healed.wait()
                if conn.never:
                    self.stats["bytes_dropped"] += len(data)
                    continue
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            try:
                dst.close()  # ends the other direction too
            except Exception:
                pass


# ---- processes ---------------------------------------------------------------------------


class Proc:
    """One child process (its own session, so a terminal Ctrl-C reaches only the harness),
    restartable, its output appended to one log file."""

    def __init__(self, name, argv, env, log_path):
        self.name, self.argv, self.env, self.log_path = name, argv, env, log_path
        self.popen: subprocess.Popen | None = None
        self.lock = threading.RLock()
        self.starts = 0
        self.expected_exit = False
        self.last_start = 0.0

    def start(self):
        with self.lock:
            with open(self.log_path, "ab") as out:
                out.write(f"\n===== chaos harness: start #{self.starts + 1} of {self.name} "
                          f"at {now():.1f}s =====\n".encode())
                out.flush()
                self.popen = subprocess.Popen(
                    self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True)
            self.starts += 1
            self.expected_exit = False
            self.last_start = time.monotonic()
            return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill9_and_restart(self):
        with self.lock:
            old = self.popen.pid if self.popen else None
            if self.alive():
                self.expected_exit = True
                self.popen.send_signal(signal.SIGKILL)
                self.popen.wait()
            return old, self.start()

    def stop(self, grace=5.0):
        with self.lock:
            if not self.alive():
                return
            self.expected_exit = True
            try:
                self.popen.send_signal(signal.SIGTERM)
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.send_signal(signal.SIGKILL)
                self.popen.wait()
            except ProcessLookupError:
                pass


def wait_http(url: str, seconds: float, proc: Proc | None = None) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not STOP.is_set():
        if proc is not None and not proc.alive():
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return True
        except Exception:
            pass
        time.sleep(0.2)
    return False


def describe_binary(path) -> str:
    """Its modification time and the start of its SHA-256, to tell builds apart."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    built = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.path.getmtime(path)))
    return f"{built} sha256:{digest.hexdigest()[:12]}"


def tail(path, lines=30) -> str:
    try:
        with open(path, "rb") as f:
            return b"".join(f.readlines()[-lines:]).decode(errors="replace")
    except OSError:
        return ""


# ---- Postgres ------------------------------------------------------------------------------


class Postgres:
    """The wrapper's throwaway cluster (scripts/lib/postgres.sh), stopped and started again
    with pg_ctl as the user that owns it, on the same options."""

    def __init__(self, pg_dir: str, pg_bin: str):
        self.dir, self.bin = pg_dir, pg_bin
        self.data = os.path.join(pg_dir, "data")
        self.run_as = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        # postmaster.opts holds the server's command line as pg_ctl started it.
        with open(os.path.join(self.data, "postmaster.opts")) as f:
            argv = shlex.split(f.read())[1:]
        opts, skip = [], False
        for arg in argv:
            if skip:
                skip = False
            elif arg == "-D":
                skip = True
            else:
                opts.append(arg)
        self.opts = shlex.join(opts)

    def _pg_ctl(self, *args) -> subprocess.CompletedProcess:
        return subprocess.run(self.run_as + [os.path.join(self.bin, "pg_ctl"), "-D", self.data,
                                             *args],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True)

    def stop(self):
        r = self._pg_ctl("-m", "fast", "-w", "-t", "60", "stop")
        if r.returncode != 0:
            log(f"pg_ctl stop failed ({r.returncode}): {r.stderr.strip()}")

    def start(self):
        r = self._pg_ctl("-l", os.path.join(self.dir, "log"), "-w", "-t", "120", "-o",
                         self.opts, "start")
        if r.returncode != 0:
            log(f"pg_ctl start failed ({r.returncode}): {r.stderr.strip()}")


# ---- the API client and what it saw --------------------------------------------------------


@dataclass
class Answer:
    status: int  # 0: no answer (see err)
    err: str | None
    latency: float
    headers: dict
    body: object


@dataclass
class Request:
    t0: float
    t1: float
    method: str
    route: str
    source: str
    status: int
    err: str | None


@dataclass
class Key:
    """One Idempotency-Key: one report the client asked for, and every answer it got."""
    key: str
    user: int
    source: str
    answers: list = field(default_factory=list)  # (status, err, replayed)
    report_id: str | None = None


class Api:
    def __init__(self, port: int, timeout: float):
        self.port, self.timeout = port, timeout
        self.lock = threading.Lock()
        self.requests: list[Request] = []

    def call(self, method, path, body=None, headers=None, source="", route=None) -> Answer:
        data = json.dumps(body).encode() if body is not None else None
        h = {"accept": "application/json"}
        if data is not None:
            h["content-type"] = "application/json"
        h.update(headers or {})
        t0 = now()
        status, err, rh, parsed = 0, None, {}, None
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=data, headers=h)
            resp = conn.getresponse()
            raw = resp.read()
            status = resp.status
            rh = {k.lower(): v for k, v in resp.getheaders()}
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = raw[:200].decode(errors="replace")
        except TimeoutError:
            err = "timeout"
        except (OSError, http.client.HTTPException) as e:
            err = type(e).__name__
        finally:
            conn.close()
        t1 = now()
        with self.lock:
            self.requests.append(Request(t0, t1, method, route or path, source, status, err))
        return Answer(status, err, t1 - t0, rh, parsed)


class Users:
    def __init__(self, api: Api, count: int, run_id: str):
        self.api = api
        self.emails = [f"chaos-{run_id}-{i}@example.com" for i in range(count)]
        self.tokens = [None] * count
        self.signed_at = [0.0] * count
        self.locks = [threading.Lock() for _ in range(count)]

    def setup(self):
        for i, email in enumerate(self.emails):
            for _ in range(20):
                a = self.api.call("POST", "/auth/signup", {"email": email, "password": PASSWORD},
                                  source="setup")
                if a.status in (201, 409):
                    break
                log(f"signup of {email}: {a.status or a.err}; retrying", quiet=True)
                sleep(1)
            else:
                raise RuntimeError(f"could not sign up {email}")
            self.signin(i)

    def signin(self, i) -> None:
        with self.locks[i]:
            for _ in range(40):
                a = self.api.call("POST", "/auth/signin",
                                  {"email": self.emails[i], "password": PASSWORD},
                                  source="signin")
                if a.status == 200 and isinstance(a.body, dict):
                    self.tokens[i] = a.body["access_token"]
                    self.signed_at[i] = time.monotonic()
                    return
                wait = 1.0
                if a.status == 429:
                    try:
                        wait = float(a.headers.get("retry-after", "5"))
                    except ValueError:
                        wait = 5.0
                sleep(min(wait, 30))
                if STOP.is_set():
                    break
            raise RuntimeError(f"could not sign in {self.emails[i]}")

    def headers(self, i) -> dict:
        return {"authorization": f"Bearer {self.tokens[i]}"}


class Client:
    """Creates and reads reports, remembering every Idempotency-Key and what it got."""

    def __init__(self, api: Api, users: Users, run_id: str):
        self.api, self.users, self.run_id = api, users, run_id
        self.lock = threading.Lock()
        self.keys: dict[str, Key] = {}
        self.reports: dict[str, Key] = {}  # report id -> the key that created it
        self.accepted_load: list[str] = []

    def _authed(self, method, path, user, body=None, extra=None, source="", route=None):
        headers = dict(self.users.headers(user))
        headers.update(extra or {})
        a = self.api.call(method, path, body, headers, source=source, route=route)
        if a.status == 401 and time.monotonic() - self.users.signed_at[user] > 30:
            try:
                self.users.signin(user)
            except RuntimeError:
                return a
            headers.update(self.users.headers(user))
            a = self.api.call(method, path, body, headers, source=source, route=route)
        return a

    def post(self, key: str, user: int, source: str) -> Answer:
        with self.lock:
            k = self.keys.setdefault(key, Key(key, user, source))
        a = self._authed("POST", "/reports", user, REPORT_BODY, {"idempotency-key": key},
                         source=source, route="POST /reports")
        replayed = a.headers.get("idempotent-replayed", "").lower() == "true"
        with self.lock:
            k.answers.append((a.status, a.err, replayed))
            if a.status == 202 and isinstance(a.body, dict) and "id" in a.body:
                rid = a.body["id"]
                if k.report_id is None:
                    k.report_id = rid
                    self.reports[rid] = k
                    if k.source == "load":
                        self.accepted_load.append(rid)
                elif k.report_id != rid:
                    log(f"key {key} answered two different reports: {k.report_id}, {rid}")
        return a

    def get(self, report_id: str, source: str) -> Answer:
        user = self.reports[report_id].user
        return self._authed("GET", f"/reports/{report_id}", user, source=source,
                            route="GET /reports/{id}")

    def accepted(self) -> list[str]:
        with self.lock:
            return list(self.reports)


# ---- the phases ----------------------------------------------------------------------------


class Bench:
    def __init__(self, s: Settings, log_dir: str):
        self.s = s
        self.log_dir = log_dir
        self.rng = random.Random(s.seed)
        self.run_id = secrets.token_hex(4)
        self.windows: list[tuple[str, float, float]] = []
        self.procs: list[Proc] = []
        self.api_proc: Proc | None = None
        self.workers: list[Proc] = []
        self.moto: Proc | None = None
        self.proxy: BlackHoleProxy | None = None
        self.pg: Postgres | None = None
        self.kills = 0
        self.unexpected_exits = collections.Counter()
        self.probe_stats = collections.Counter()
        self.inflight = threading.BoundedSemaphore(500)
        self.probe_threads: list[threading.Thread] = []
        self.info: dict = {}

    # -- setup --

    def binaries(self) -> tuple[str, str]:
        def pair(profile):
            d = os.path.join(self.s.target_dir, profile)
            return os.path.join(d, "api-server"), os.path.join(d, "worker")

        def mtime(paths):
            try:
                return min(os.path.getmtime(p) for p in paths)
            except OSError:
                return None

        debug, release = pair("debug"), pair("release")
        choice = self.s.profile
        if choice == "auto":
            dm, rm = mtime(debug), mtime(release)
            choice = "release" if rm is not None and (dm is None or rm > dm) else "debug"
        chosen = release if choice == "release" else debug
        chosen = (self.s.api_server or chosen[0], self.s.worker or chosen[1])
        if self.s.api_server or self.s.worker:
            choice += " (with --api-server/--worker)"
        for path in chosen:
            if not os.access(path, os.X_OK):
                raise SystemExit(f"no {path}: build it (cargo build -p quire-api -p quire-worker"
                                 f"{' --release' if choice == 'release' else ''}) or pass "
                                 "--target-dir")
        self.info["profile"] = choice
        return chosen

    def known_settings(self, binary: str) -> set:
        try:
            out = subprocess.run([binary, "--help"], capture_output=True, text=True,
                                 timeout=20, env={"PATH": os.environ.get("PATH", "")}).stdout
        except (OSError, subprocess.SubprocessError):
            return set()
        return set(re.findall(r"env:\s*([A-Z0-9_]+)=", out))

    def commit(self) -> str:
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        try:
            head = subprocess.run(["git", "-C", repo, "rev-parse", "--short=12", "HEAD"],
                                  capture_output=True, text=True, timeout=10).stdout.strip()
            dirty = subprocess.run(["git", "--no-optional-locks", "-C", repo, "status",
                                    "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=20).stdout.strip()
            return head + (" (with uncommitted changes)" if dirty else "")
        except (OSError, subprocess.SubprocessError):
            return "unknown"

    def boto(self, service):
        import boto3  # from moto's virtualenv; imported here so --help works anywhere
        from botocore.config import Config
        return boto3.client(service, endpoint_url=self.moto_url, region_name=REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing",
                            config=Config(s3={"addressing_style": "path"},
                                          retries={"max_attempts": 3},
                                          connect_timeout=5, read_timeout=30))

    def setup(self):
        s = self.s
        # Copies: a rebuild during the run must not change what a restarted worker runs.
        bin_dir = os.path.join(self.log_dir, "bin")
        os.makedirs(bin_dir)
        api_bin, worker_bin = (shutil.copy2(b, bin_dir) for b in self.binaries())
        self.info["binaries"] = {os.path.basename(b): describe_binary(b)
                                 for b in (api_bin, worker_bin)}
        apart = abs(os.path.getmtime(api_bin) - os.path.getmtime(worker_bin))
        if apart > 120:
            self.info["warning"] = (
                f"api-server and worker were built {apart / 60:.0f} minutes apart: maybe from "
                "different sources (a shared target directory?)")
        self.info["commit"] = self.commit()
        database_url = os.environ.get("DATABASE_URL")
        pg_dir, pg_bin = os.environ.get("QUIRE_CHAOS_PG_DIR"), os.environ.get("QUIRE_CHAOS_PG_BIN")
        if not (database_url and pg_dir and pg_bin):
            raise SystemExit("run me through scripts/bench/chaos.sh (it starts the throwaway "
                             "Postgres this harness stops and starts)")
        self.pg = Postgres(pg_dir, pg_bin)

        # moto, and the proxy every Quire process reaches it through.
        moto_server = os.path.join(s.moto_venv, "bin", "moto_server")
        moto_port = free_port()
        self.moto_url = f"http://127.0.0.1:{moto_port}"
        self.moto = Proc("moto", [moto_server, "-H", "127.0.0.1", "-p", str(moto_port)],
                         dict(os.environ), os.path.join(self.log_dir, "moto.log"))
        self.moto.start()
        self.procs.append(self.moto)
        if not wait_http(self.moto_url + "/moto-api/", 60, self.moto):
            raise SystemExit("moto did not come up:\n" + tail(self.moto.log_path))
        self.proxy = BlackHoleProxy(moto_port, s.black_hole)
        proxy_url = f"http://127.0.0.1:{self.proxy.start()}"

        sqs = self.boto("sqs")
        dlq = sqs.create_queue(QueueName="quire-chaos-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        work = sqs.create_queue(QueueName="quire-chaos-work", Attributes={
            "VisibilityTimeout": str(s.visibility_timeout),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                         "maxReceiveCount": str(s.max_receive_count)}),
        })["QueueUrl"]
        self.queue_urls = {"work": work, "dlq": dlq}
        s3 = self.boto("s3")
        self.bucket = "quire-chaos-outputs"
        s3.create_bucket(Bucket=self.bucket)
        s3.put_bucket_versioning(Bucket=self.bucket,
                                 VersioningConfiguration={"Status": "Enabled"})
        # Duplicate uploads are counted as extra versions: check that a second put of a key
        # does make one, then remove the probe for good.
        for body in (b"1", b"2"):
            s3.put_object(Bucket=self.bucket, Key="chaos-self-check", Body=body)
        probe = s3.list_object_versions(Bucket=self.bucket, Prefix="chaos-self-check")
        versions = probe.get("Versions", [])
        if len(versions) != 2 or any(v["VersionId"] in (None, "null") for v in versions):
            raise SystemExit(f"the bucket does not keep versions ({versions}): duplicate "
                             "uploads could not be counted")
        for v in versions:
            s3.delete_object(Bucket=self.bucket, Key=v["Key"], VersionId=v["VersionId"])

        def via_proxy(url):
            return proxy_url + urllib.parse.urlsplit(url).path

        api_port = free_port()
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("AWS_", "QUIRE_")) and k != "DATABASE_URL"}
        base.update({
            "DATABASE_URL": database_url,
            "RUST_LOG": os.environ.get("RUST_LOG", "info"),
            "QUIRE_QUEUE": "sqs",
            "QUIRE_SQS_QUEUE_URL": via_proxy(work),
            "QUIRE_SQS_DEAD_LETTER_QUEUE_URL": via_proxy(dlq),
            "QUIRE_STORAGE": "s3",
            "QUIRE_S3_BUCKET": self.bucket,
            "QUIRE_S3_FORCE_PATH_STYLE": "true",
            "AWS_ENDPOINT_URL": proxy_url,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
            "QUIRE_VISIBILITY_TIMEOUT": str(s.visibility_timeout),
            "QUIRE_PENDING_SWEEP_SECS": str(s.pending_sweep_secs),
        })
        # The reliability settings, in plain seconds (durations parse those too).
        for name, seconds in (("QUIRE_DB_ACQUIRE_TIMEOUT", s.db_acquire_timeout),
                              ("QUIRE_RESCUE_INTERVAL", s.rescue_interval),
                              ("QUIRE_RESCUE_AFTER", s.rescue_after),
                              ("QUIRE_AWS_CONNECT_TIMEOUT", s.aws_connect_timeout),
                              ("QUIRE_AWS_READ_TIMEOUT", s.aws_read_timeout),
                              ("QUIRE_AWS_OPERATION_TIMEOUT", s.aws_operation_timeout)):
            if seconds > 0:
                base[name] = str(seconds)
        base.update(s.extra_env)
        api_env = dict(base, QUIRE_LISTEN=f"127.0.0.1:{api_port}",
                       QUIRE_JWT_SECRET=secrets.token_hex(32), QUIRE_BCRYPT_COST="4",
                       # Benchmark users make thousands of reports, and sign up from one
                       # address: no per-user quota, no sign-up limit per address.
                       QUIRE_QUOTA_UNFINISHED="0", QUIRE_QUOTA_PER_HOUR="0",
                       QUIRE_SIGNUP_PER_ADDRESS_PER_HOUR="0")
        api_env.update({k: v for k, v in s.extra_env.items()})
        self.passed_env = {k: base[k] for k in sorted(base)
                           if k.startswith("QUIRE_") or k.startswith("AWS_") or k == "RUST_LOG"}

        known_api, known_worker = self.known_settings(api_bin), self.known_settings(worker_bin)
        self.info["new_settings_known"] = {
            name: [b for b, known in (("api-server", known_api), ("worker", known_worker))
                   if name in known] for name in NEW_SETTINGS if name in base}

        self.api_proc = Proc("api-server", [api_bin], api_env,
                             os.path.join(self.log_dir, "api-server.log"))
        self.api_proc.start()
        self.procs.append(self.api_proc)
        if not wait_http(f"http://127.0.0.1:{api_port}/healthz", 120, self.api_proc):
            raise SystemExit("api-server did not come up:\n" + tail(self.api_proc.log_path))
        for i in range(s.workers):
            env = dict(base, QUIRE_HEALTH_LISTEN=f"127.0.0.1:{free_port()}")
            w = Proc(f"worker-{i}", [worker_bin], env,
                     os.path.join(self.log_dir, f"worker-{i}.log"))
            w.start()
            self.workers.append(w)
            self.procs.append(w)
        for w in self.workers:
            url = f"http://{w.env['QUIRE_HEALTH_LISTEN']}/healthz"
            if not wait_http(url, 60, w):
                raise SystemExit(f"{w.name} did not come up:\n" + tail(w.log_path))

        self.api = Api(api_port, s.request_timeout)
        self.users = Users(self.api, s.users, self.run_id)
        self.users.setup()
        self.client = Client(self.api, self.users, self.run_id)
        threading.Thread(target=self.monitor, name="monitor", daemon=True).start()

    def monitor(self):
        """Restarts a Quire process that exited on its own (a crash is a finding: counted)."""
        while not STOP.is_set():
            for p in [self.api_proc] + self.workers:
                with p.lock:
                    if p.popen is None or p.alive() or p.expected_exit or STOP.is_set():
                        continue
                    if time.monotonic() - p.last_start < 2:
                        continue
                    code = p.popen.returncode
                    self.unexpected_exits[p.name] += 1
                    log(f"{p.name} exited on its own (code {code}); restarting it")
                    p.start()
            sleep(0.5)

    # -- phase 1: reports while workers are killed --

    def phase_kills(self):
        s = self.s
        log(f"phase 1: {s.reports} reports over ~{s.create_seconds:.0f} s from {s.clients} "
            f"clients; a worker SIGKILLed every {s.kill_min:g}-{s.kill_max:g} s for "
            f"{s.kill_seconds:.0f} s")
        start = now()
        counter = itertools.count()
        spacing = s.create_seconds / max(1, s.reports)

        def create():
            while not STOP.is_set():
                i = next(counter)
                if i >= s.reports:
                    return
                sleep(start + i * spacing - now())
                key = f"chaos-{self.run_id}-load-{i}"
                for _ in range(4):
                    a = self.client.post(key, i % s.users, "load")
                    if a.status == 202 or (400 <= a.status < 500 and a.status != 429):
                        break
                    sleep(1.0)

        creators = [threading.Thread(target=create, name=f"create-{c}", daemon=True)
                    for c in range(s.clients)]
        for t in creators:
            t.start()
        last_note = now()
        hard_end = start + s.kill_seconds + 120
        while not STOP.is_set():
            done = not any(t.is_alive() for t in creators)
            if (now() - start >= s.kill_seconds and done) or now() >= hard_end:
                break
            sleep(self.rng.uniform(s.kill_min, s.kill_max))
            if STOP.is_set():
                break
            w = self.rng.choice(self.workers)
            old, new = w.kill9_and_restart()
            self.kills += 1
            log(f"SIGKILL {w.name} (pid {old}); restarted as pid {new}", quiet=True)
            if now() - last_note >= 10:
                last_note = now()
                log(f"  accepted {len(self.client.accepted_load)}/{s.reports}, "
                    f"{self.kills} kills so far")
        for t in creators:
            t.join(s.request_timeout * 5)
        self.windows.append(("kill", start, now()))
        log(f"phase 1 done: {len(self.client.accepted_load)}/{s.reports} accepted, "
            f"{self.kills} worker kills")

    # -- the prober --

    def prober(self, stop: threading.Event):
        n = 0
        while not stop.is_set() and not STOP.is_set():
            tick = time.monotonic()
            loads = self.client.accepted_load
            jobs = [("post", f"chaos-{self.run_id}-probe-{n}", n % self.s.users)]
            if loads:
                jobs.append(("get", loads[self.rng.randrange(len(loads))], None))
            n += 1
            for kind, arg, user in jobs:
                if not self.inflight.acquire(blocking=False):
                    self.probe_stats["skipped (500 requests in flight)"] += 1
                    continue
                t = threading.Thread(target=self._probe, args=(kind, arg, user), daemon=True)
                t.start()
                self.probe_threads.append(t)
            stop.wait(max(0.0, self.s.probe_interval - (time.monotonic() - tick)))

    def _probe(self, kind, arg, user):
        try:
            if kind == "post":
                self.client.post(arg, user, "probe")
            else:
                self.client.get(arg, "probe")
        finally:
            self.inflight.release()

    # -- phases 2 and 3: outages --

    def phase_outages(self):
        s = self.s
        stop_probe = threading.Event()
        prober = threading.Thread(target=self.prober, args=(stop_probe,), name="prober",
                                  daemon=True)
        prober.start()
        log(f"phase 2: Postgres outages of {', '.join(f'{x:g} s' for x in s.pg_outages)}; "
            f"the prober sends GET and POST every {s.probe_interval:g} s")
        sleep(min(3.0, s.recovery_seconds))
        for seconds in s.pg_outages:
            if STOP.is_set():
                break
            name = f"pg-{seconds:g}s"
            t0 = now()
            log(f"{name}: stopping Postgres")
            self.pg.stop()
            sleep(seconds - (now() - t0))
            self.pg.start()
            self.windows.append((name, t0, now()))
            log(f"{name}: Postgres is back after {now() - t0:.1f} s")
            sleep(s.recovery_seconds)
        if s.blackhole_seconds > 0 and not STOP.is_set():
            log(f"phase 3: SQS and S3 black-holed for {s.blackhole_seconds:g} s "
                f"({s.black_hole} mode)")
            t0 = now()
            self.proxy.set_hole(True)
            sleep(s.blackhole_seconds)
            self.proxy.set_hole(False)
            self.windows.append(("aws-blackhole", t0, now()))
            log("aws-blackhole: healed")
            sleep(s.recovery_seconds)
        stop_probe.set()
        prober.join(10)
        log(f"prober stopped; waiting for its {sum(t.is_alive() for t in self.probe_threads)} "
            "requests in flight")
        for t in self.probe_threads:
            t.join(max(0.0, s.request_timeout + 5))

    # -- after: replays and the drain --

    def replay(self):
        """Every key that never got a 202 but got a 5xx or no answer is sent again: a replayed
        report proves the report existed (the 5xx was a lie); a new one that it did not."""
        todo = [k for k in self.client.keys.values()
                if not any(st == 202 for st, _, _ in k.answers)
                and any(st >= 500 or st == 0 for st, _, _ in k.answers)]
        if not todo:
            log("no POST to replay")
            return
        log(f"replaying {len(todo)} POSTs that got a 5xx or no answer")

        def one(k: Key):
            for _ in range(6):
                a = self.client.post(k.key, k.user, k.source)
                if a.status == 202 or (400 <= a.status < 500 and a.status != 429):
                    return
                sleep(2)

        threads = [threading.Thread(target=one, args=(k,), daemon=True) for k in todo]
        for i in range(0, len(threads), 16):
            batch = threads[i:i + 16]
            for t in batch:
                t.start()
            for t in batch:
                t.join(self.s.request_timeout * 7)

    def fetch_all(self, ids, source, seconds: float) -> dict:
        """Each report as GET shows it, `404`, or `?` when it could not be read (three
        tries, and none started after `seconds`)."""
        out = {rid: "?" for rid in ids}
        lock = threading.Lock()
        queue = list(ids)
        deadline = time.monotonic() + seconds

        def run():
            while time.monotonic() < deadline:
                with lock:
                    if not queue:
                        return
                    rid = queue.pop()
                result = "?"
                for _ in range(3):
                    a = self.client.get(rid, source)
                    if a.status == 200 and isinstance(a.body, dict):
                        result = a.body
                        break
                    if a.status == 404:
                        result = "404"
                        break
                    sleep(0.5)
                with lock:
                    out[rid] = result

        threads = [threading.Thread(target=run, daemon=True) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out

    def drain(self) -> dict:
        s = self.s
        ids = self.client.accepted()
        log(f"waiting up to {s.drain_seconds:.0f} s for {len(ids)} accepted reports to finish")
        t0 = now()
        pending = set(ids)
        last_note = -1e9
        while pending and now() - t0 < s.drain_seconds and not STOP.is_set():
            got = self.fetch_all(pending, "drain", max(5.0, s.drain_seconds - (now() - t0)))
            for rid, r in got.items():
                if r == "404" or (isinstance(r, dict) and r.get("status") in TERMINAL):
                    pending.discard(rid)
            if now() - last_note >= 15:
                last_note = now()
                counts = collections.Counter(r.get("status") if isinstance(r, dict) else r
                                             for r in got.values())
                log(f"  {len(pending)} unfinished ({dict(counts)})")
            if pending:
                sleep(2)
        self.windows.append(("drain", t0, now()))
        log(f"drain done after {now() - t0:.0f} s; {len(pending)} unfinished")
        return self.fetch_all(ids, "final", 120)

    # -- the figures --

    def bucket_versions(self):
        s3 = self.boto("s3")
        versions = collections.Counter()
        delete_markers = 0
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=self.bucket):
            for v in page.get("Versions", []):
                versions[v["Key"]] += 1
            delete_markers += len(page.get("DeleteMarkers", []))
        return versions, delete_markers

    def queue_counts(self, url):
        sqs = self.boto("sqs")
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed"])["Attributes"]
        return sum(int(v) for v in attrs.values())

    def window_stats(self):
        stats = {}
        requests = self.api.requests
        for name, w0, w1 in self.windows:
            inside = [r for r in requests if r.t0 <= w1 and r.t1 >= w0]
            lat = sorted(r.t1 - r.t0 for r in inside)
            stats[name] = {
                "seconds": round(w1 - w0, 1),
                "requests": len(inside),
                "slowest": round(lat[-1], 3) if lat else None,
                "p50": round(statistics.median(lat), 3) if lat else None,
                "p99": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 3) if lat else None,
                "over_limit": sum(1 for x in lat if x > self.s.answer_limit),
                "5xx": sum(1 for r in inside if r.status >= 500),
                "no_answer": sum(1 for r in inside if r.status == 0),
            }
        return stats

    def figures(self, final: dict) -> dict:
        s = self.s
        statuses = collections.Counter()
        for r in final.values():
            statuses[r.get("status") if isinstance(r, dict) else r] += 1
        keys = list(self.client.keys.values())
        by_source = collections.Counter(k.source for k in keys if k.report_id)
        outcomes = classify(keys)
        requests = self.api.requests
        fivexx = [r for r in requests if r.status >= 500]
        versions, delete_markers = self.bucket_versions()
        completed_ids = {rid for rid, r in final.items()
                         if isinstance(r, dict) and r.get("status") == "completed"}
        report_of_key = {key: key.rsplit("/", 1)[-1].split(".", 1)[0] for key in versions}
        orphans = sum(1 for key, rid in report_of_key.items() if rid not in completed_ids)
        stored = set(report_of_key.values())
        missing_output = sum(1 for rid in completed_ids if rid not in stored)
        failures = collections.Counter(
            (r.get("error_message") or "")[:120] for r in final.values()
            if isinstance(r, dict) and r.get("status") == "failed")
        stuck = [r for r in final.values() if isinstance(r, dict)
                 and r.get("status") in UNFINISHED]
        stuck_detail = collections.Counter(
            (r.get("status"), r.get("attempts")) for r in stuck)
        panics = 0
        for p in [self.api_proc] + self.workers:
            try:
                with open(p.log_path, "rb") as f:
                    panics += f.read().count(b"panicked at")
            except OSError:
                pass
        accepted = len(final)
        fig = {
            "reports": s.reports,
            "accepted": accepted,
            "accepted_load": by_source.get("load", 0),
            "accepted_probe": by_source.get("probe", 0),
            "completed": statuses.get("completed", 0),
            "completed_load": sum(1 for rid in self.client.accepted_load
                                  if rid in completed_ids),
            "failed": statuses.get("failed", 0),
            "cancelled": statuses.get("cancelled", 0),
            "stuck": sum(statuses.get(x, 0) for x in UNFINISHED),
            "stuck_by_status": {x: statuses[x] for x in UNFINISHED if statuses.get(x)},
            "lost": statuses.get("404", 0),
            "unreadable_at_end": statuses.get("?", 0),
            "never_accepted": outcomes["never_accepted"],
            "rejected_4xx": outcomes["rejected"],
            "duplicate_uploads": sum(1 for n in versions.values() if n > 1),
            "extra_object_versions": sum(n - 1 for n in versions.values() if n > 1),
            "objects": len(versions),
            "delete_markers": delete_markers,
            "objects_without_completed_report": orphans,
            "completed_without_object": missing_output,
            "http_5xx": len(fivexx),
            "http_5xx_by_route": dict(collections.Counter(
                f"{r.route} {r.status}" for r in fivexx)),
            "5xx_for_accepted": outcomes["lies"],
            "no_answer_for_accepted": outcomes["silent_accepts"],
            "5xx_truthful": outcomes["truthful_5xx"],
            "no_answer": sum(1 for r in requests if r.status == 0),
            "requests": len(requests),
            "windows": self.window_stats(),
            "dlq_messages": self.queue_counts(self.queue_urls["dlq"]),
            "work_queue_messages": self.queue_counts(self.queue_urls["work"]),
            "worker_kills": self.kills,
            "unexpected_exits": dict(self.unexpected_exits),
            "panics_in_logs": panics,
            "prober": dict(self.probe_stats),
            "proxy": dict(self.proxy.stats),
            "failure_messages": dict(failures.most_common(5)),
            "stuck_status_attempts": {f"{st} (attempts {a})": n
                                      for (st, a), n in stuck_detail.most_common(8)},
        }
        return fig


def classify(keys) -> collections.Counter:
    """What each Idempotency-Key's answers say. The first 202 of a key tells whether the
    report existed before (`Idempotent-Replayed: true`): if so, an earlier 5xx was a lie
    (`lies`) or an earlier missing answer hid an acceptance (`silent_accepts`); if not, an
    earlier 5xx was true (`truthful_5xx`). Keys without a 202 were `rejected` (4xx only) or
    `never_accepted` (a 5xx or no answer to the end)."""
    out = collections.Counter(lies=0, silent_accepts=0, truthful_5xx=0, rejected=0,
                              never_accepted=0)
    for k in keys:
        statuses = [st for st, _, _ in k.answers]
        if 202 not in statuses:
            if statuses and all(400 <= st < 500 for st in statuses):
                out["rejected"] += 1
            elif statuses:
                out["never_accepted"] += 1
            continue
        first = statuses.index(202)
        before = statuses[:first]
        replayed = k.answers[first][2]
        if replayed and any(st >= 500 for st in before):
            out["lies"] += 1
        elif replayed and any(st == 0 for st in before):
            out["silent_accepts"] += 1
        elif any(st >= 500 for st in before):
            out["truthful_5xx"] += 1
    return out


def verdict(fig: dict, s: Settings) -> list[str]:
    missed = []
    if fig["accepted_load"] < fig["reports"]:
        missed.append(f"accepted {fig['accepted_load']} of {fig['reports']} reports")
    if fig["completed"] < fig["accepted"]:
        missed.append(f"completed {fig['completed']} of {fig['accepted']} accepted")
    for name, want in (("stuck", 0), ("lost", 0), ("duplicate_uploads", 0),
                       ("5xx_for_accepted", 0)):
        if fig[name] != want:
            missed.append(f"{name.replace('_', ' ')} {fig[name]} (want {want})")
    for name, w in fig["windows"].items():
        if name in ("kill", "drain"):
            continue
        if w["slowest"] is not None and w["slowest"] > s.answer_limit:
            missed.append(f"slowest answer during {name} {w['slowest']:.1f} s "
                          f"(want <= {s.answer_limit:g} s)")
    return missed


def print_report(fig: dict, bench: Bench, missed: list[str]):
    s = bench.s
    rows = [
        ("reports asked for (phase 1)", fig["reports"], ""),
        ("accepted (202)", fig["accepted"],
         f"phase 1: {fig['accepted_load']}, prober: {fig['accepted_probe']}"),
        ("completed", fig["completed"], f"target {fig['accepted']} of {fig['accepted']}; "
                                        f"phase 1: {fig['completed_load']}"),
        ("failed", fig["failed"], ""),
        ("cancelled", fig["cancelled"], ""),
        ("stuck (unfinished at the end)", fig["stuck"],
         ("target 0; " + ", ".join(f"{k} {v}" for k, v in fig["stuck_by_status"].items()))
         if fig["stuck"] else "target 0"),
        ("lost (202, then 404)", fig["lost"], "target 0"),
        ("unreadable at the end", fig["unreadable_at_end"], "GET failed 3 times"),
        ("never accepted (5xx/no answer)", fig["never_accepted"], "even after replays"),
        ("duplicate uploads", fig["duplicate_uploads"],
         f"target 0; keys with >1 version, {fig['extra_object_versions']} extra versions"),
        ("objects / without completed report", f"{fig['objects']} / "
         f"{fig['objects_without_completed_report']}",
         f"completed without object: {fig['completed_without_object']}"),
        ("5xx answers (all)", fig["http_5xx"],
         ", ".join(f"{k}: {v}" for k, v in sorted(fig["http_5xx_by_route"].items()))),
        ("5xx for accepted reports", fig["5xx_for_accepted"],
         "target 0; POST 5xx whose key replays an existing report"),
        ("no answer for accepted reports", fig["no_answer_for_accepted"],
         "POST timeout/reset whose key replays an existing report"),
        ("requests without answer", fig["no_answer"],
         f"client timeout {s.request_timeout:g} s or connection error"),
        ("dead-letter queue messages", fig["dlq_messages"],
         f"work queue still holds {fig['work_queue_messages']}"),
        ("worker kills (SIGKILL)", fig["worker_kills"], ""),
        ("unexpected process exits", sum(fig["unexpected_exits"].values()),
         ", ".join(f"{k}: {v}" for k, v in fig["unexpected_exits"].items())),
        ("panics in process logs", fig["panics_in_logs"], ""),
    ]
    width = max(len(r[0]) for r in rows)
    print()
    print("=" * 78)
    print(f"Quire chaos benchmark: {bench.info.get('profile')} binaries "
          f"{bench.info.get('binaries')}; work tree at {bench.info.get('commit')}")
    if bench.info.get("warning"):
        print("WARNING: " + bench.info["warning"])
    print("=" * 78)
    for name, value, note in rows:
        print(f"  {name:<{width}}  {str(value):>9}  {note}")
    print()
    print(f"  slowest API answer per phase (target <= {s.answer_limit:g} s during an outage):")
    print(f"  {'phase':<14} {'length':>7} {'requests':>9} {'slowest':>9} {'p50':>7} {'p99':>7} "
          f"{'>limit':>7} {'5xx':>5} {'no-ans':>7}")
    for name, w in fig["windows"].items():
        def sec(x):
            return "-" if x is None else f"{x:.2f}s"
        print(f"  {name:<14} {w['seconds']:>6.0f}s {w['requests']:>9} {sec(w['slowest']):>9} "
              f"{sec(w['p50']):>7} {sec(w['p99']):>7} {w['over_limit']:>7} {w['5xx']:>5} "
              f"{w['no_answer']:>7}")
    if fig["failure_messages"]:
        print("\n  failure messages: " + "; ".join(
            f"{n}x {m!r}" for m, n in fig["failure_messages"].items()))
    if fig["stuck_status_attempts"]:
        print("  stuck reports: " + ", ".join(
            f"{k}: {v}" for k, v in fig["stuck_status_attempts"].items()))
    print()
    print("TARGET MET" if not missed else "TARGET MISSED: " + "; ".join(missed))


def main(argv=None) -> int:
    global EVENTS_FILE
    s = parse_args(sys.argv[1:] if argv is None else argv)
    log_dir = tempfile.mkdtemp(prefix="quire-chaos.")
    EVENTS_FILE = open(os.path.join(log_dir, "events.log"), "a")

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    # SIGINT too: a shell starts background jobs with it ignored, and the wrapper forwards
    # both as SIGTERM.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(f"logs: {log_dir}", flush=True)
    bench = Bench(s, log_dir)
    code = 0
    try:
        bench.setup()
        log(f"run {bench.run_id}: {bench.info['profile']} binaries {bench.info['binaries']}, "
            f"work tree at {bench.info['commit']}, seed {s.seed}")
        if "warning" in bench.info:
            log("WARNING: " + bench.info["warning"])
        log("reliability settings passed, and which binaries read them: " + ", ".join(
            f"{k}={bench.passed_env[k]} ({'+'.join(v) or 'NONE: ignored'})"
            for k, v in bench.info["new_settings_known"].items()))
        with open(os.path.join(log_dir, "env.json"), "w") as f:
            json.dump(bench.passed_env, f, indent=2)
        bench.phase_kills()
        bench.phase_outages()
        bench.replay()
        final = bench.drain()
        fig = bench.figures(final)
        missed = verdict(fig, s)
        fig.update({
            "target_met": not missed,
            "missed": missed,
            "commit": bench.info.get("commit"),
            "profile": bench.info.get("profile"),
            "binaries": bench.info.get("binaries"),
            "new_settings_known": bench.info.get("new_settings_known"),
            "warning": bench.info.get("warning"),
            "seed": s.seed,
            "short": s.short,
            "black_hole_mode": s.black_hole,
            "log_dir": log_dir,
        })
        print_report(fig, bench, missed)
        line = json.dumps(fig, sort_keys=True)
        with open(os.path.join(log_dir, "result.json"), "w") as f:
            f.write(line + "\n")
        print("CHAOS_RESULT " + line)
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        code = 130
    finally:
        # A second Ctrl-C must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        STOP.set()
        for p in reversed(bench.procs):
            try:
                p.stop()
            except Exception as e:  # keep cleaning up the others
                print(f"stopping {p.name}: {e}", file=sys.stderr)
        if bench.proxy is not None:
            bench.proxy.stop()
        if bench.pg is not None:
            with contextlib.suppress(OSError):
                shutil.copy(os.path.join(bench.pg.dir, "log"),
                            os.path.join(log_dir, "postgres.log"))
        shutil.rmtree(os.path.join(log_dir, "bin"), ignore_errors=True)
        print(f"logs: {log_dir}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
