#!/usr/bin/env python3
"""Quire's pipeline throughput benchmark: how many reports a second the production pipeline
(api-server + workers on Postgres, SQS and S3) gets through on an AWS emulator, how many
emulator requests each report costs, and how fast the emulator itself is, in the same run.

Run it through the wrapper, which starts a throwaway Postgres and the emulator:

    scripts/bench/pipeline.sh                       # moto, then LocalStack, then a summary
    scripts/bench/pipeline.sh --emulator moto       # one emulator
    scripts/bench/pipeline.sh --reports 100         # a quick run
    scripts/bench/pipeline.sh --help

What one run does, all on loopback:

- creates the work queue (with a dead-letter queue) and the bucket on the emulator, as
  scripts/localstack-resources.py does;
- puts this harness's TCP proxy (chaos.py's, never black-holed here) between the Quire
  processes and the emulator, and counts every HTTP request passing through it: SQS by the
  `X-Amz-Target` header (JSON protocol) or the `Action=` form field (query protocol), S3 by
  method and path shape;
- starts one api-server and two workers (QUIRE_QUEUE=sqs, QUIRE_STORAGE=s3), signs up the
  users, then creates the reports (profile, pdf) from a pool of client threads as fast as
  they go and waits until every report is finished (Postgres is polled with psql);
- samples the peak RSS (VmHWM) and CPU time of every process;
- stops the Quire processes and measures the emulator alone: one boto3 client sending
  SendMessage in a loop (directly, then through the proxy), then PutObject in a loop.

It prints one block of figures and one `PIPELINE_RESULT {json}` line; `--summary FILE...`
prints the side-by-side table of several runs' result files. Reuses chaos.py's proxy,
process, API-client and binary helpers. No faults are injected.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import http.client
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chaos  # noqa: E402  (the chaos benchmark's helpers)
from chaos import STOP, Api, Client, Proc, Users, describe_binary, free_port, log, tail  # noqa: E402

REGION = chaos.REGION
SQS_ACTIONS_FIRST = ("SendMessage", "ReceiveMessage", "DeleteMessage", "ChangeMessageVisibility",
                     "GetQueueAttributes")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---- counting the emulator's requests -----------------------------------------------------


def s3_operation(method: str, path: str, query: str, headers: dict) -> str:
    """An S3 operation's name and shape, e.g. `PutObject (PUT /bucket/key)`, from a
    path-style request."""
    q = urllib.parse.parse_qs(query, keep_blank_values=True)
    parts = path.lstrip("/").split("/", 1)
    is_object = len(parts) == 2 and parts[1] != ""
    shape = "/bucket/key" if is_object else ("/bucket" if parts[0] else "/")
    shown = sorted(k for k in q if k != "x-id")
    shape += ("?" + "&".join(shown)) if shown else ""
    op = (q.get("x-id") or [""])[0]  # the Rust SDK names some operations in the query
    if not op:
        if is_object:
            if method == "PUT":
                op = ("UploadPart" if "partNumber" in q else
                      "CopyObject" if "x-amz-copy-source" in headers else "PutObject")
            elif method == "POST":
                op = "CreateMultipartUpload" if "uploads" in q else (
                    "CompleteMultipartUpload" if "uploadId" in q else "PostObject")
            elif method == "DELETE":
                op = "AbortMultipartUpload" if "uploadId" in q else "DeleteObject"
            else:
                op = {"GET": "GetObject", "HEAD": "HeadObject"}.get(method, "?")
        elif parts[0]:
            if method == "GET":
                op = ("ListObjectVersions" if "versions" in q else
                      "ListObjectsV2" if q.get("list-type") == ["2"] else
                      ("GetBucket" + shown[0].capitalize()) if shown else "ListObjects")
            elif method == "PUT":
                op = ("PutBucket" + shown[0].capitalize()) if shown else "CreateBucket"
            elif method == "POST" and "delete" in q:
                op = "DeleteObjects"
            else:
                op = {"HEAD": "HeadBucket", "DELETE": "DeleteBucket"}.get(method, "?")
        else:
            op = "ListBuckets" if method == "GET" else "?"
    return f"S3 {op} ({method} {shape})"


def classify(method: str, target: str, headers: dict, body: bytes) -> str:
    """`SQS <Action>` or `S3 <Operation> (<method> <shape>)` for one request."""
    amz_target = headers.get("x-amz-target", "")
    if amz_target.startswith("AmazonSQS."):
        return "SQS " + amz_target.split(".", 1)[1]
    if target.startswith(("http://", "https://")):  # absolute form
        target = urllib.parse.urlsplit(target)._replace(scheme="", netloc="").geturl()
    path, _, query = target.partition("?")
    m = re.search(r"/([a-z0-9-]+)/aws4_request", headers.get("authorization", ""))
    service = m.group(1) if m else ""
    if service == "sqs" or (not service and (b"Action=" in body or "Action=" in query)):
        form = urllib.parse.parse_qs(body.decode("latin-1")) if body else {}
        action = (form.get("Action") or urllib.parse.parse_qs(query).get("Action") or ["?"])[0]
        return "SQS " + action
    return s3_operation(method, path, query, headers)


class CountingProxy(chaos.BlackHoleProxy):
    """chaos.py's proxy (never black-holed here) that also parses the HTTP/1.1 requests
    going to the emulator and counts them by operation."""

    BODY_KEEP = 64 * 1024  # enough of a form body to find Action=

    def __init__(self, upstream_port: int):
        super().__init__(upstream_port, "resume")
        self.lock = threading.Lock()
        self.counts: collections.Counter = collections.Counter()
        self.put_bytes = [0, 0]  # S3 PutObject: requests, body bytes

    def snapshot(self):
        with self.lock:
            return dict(self.counts), list(self.put_bytes)

    def reset(self):
        with self.lock:
            self.counts.clear()
            self.put_bytes = [0, 0]

    async def _pump(self, src, dst, conn):
        peer = dst.get_extra_info("peername")
        if peer and peer[1] == self.upstream_port:  # client -> emulator: requests
            await self._pump_requests(src, dst)
        else:
            await super()._pump(src, dst, conn)

    async def _pump_requests(self, src, dst):
        try:
            while True:
                try:
                    head = await src.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as e:
                    if e.partial:
                        dst.write(e.partial)
                    break
                except asyncio.LimitOverrunError:
                    with self.lock:
                        self.counts["(unparsed: headers over 64 KiB)"] += 1
                    while data := await src.read(65536):  # the rest, blindly
                        dst.write(data)
                        await dst.drain()
                    break
                dst.write(head)
                lines = head.decode("latin-1").split("\r\n")
                method, _, rest = lines[0].partition(" ")
                target = rest.rpartition(" ")[0] or rest
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, _, v = line.partition(":")
                        headers[k.strip().lower()] = v.strip()
                keep = "x-www-form-urlencoded" in headers.get("content-type", "")
                kept = bytearray()
                size = 0
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    while True:
                        line = await src.readuntil(b"\r\n")
                        dst.write(line)
                        n = int(line.split(b";")[0].strip() or b"0", 16)
                        if n == 0:
                            while (trailer := await src.readuntil(b"\r\n")) != b"\r\n":
                                dst.write(trailer)
                            dst.write(b"\r\n")
                            break
                        data = await src.readexactly(n + 2)
                        dst.write(data)
                        size += n
                        if keep and len(kept) < self.BODY_KEEP:
                            kept += data[:n]
                        await dst.drain()
                else:
                    left = int(headers.get("content-length") or 0)
                    while left > 0:
                        data = await src.read(min(left, 65536))
                        if not data:
                            raise asyncio.IncompleteReadError(b"", left)
                        left -= len(data)
                        size += len(data)
                        dst.write(data)
                        if keep and len(kept) < self.BODY_KEEP:
                            kept += data
                        await dst.drain()
                label = classify(method, target, headers, bytes(kept))
                decoded = headers.get("x-amz-decoded-content-length")
                with self.lock:
                    self.counts[label] += 1
                    if label.startswith("S3 PutObject"):
                        self.put_bytes[0] += 1
                        self.put_bytes[1] += int(decoded) if decoded else size
                await dst.drain()
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                asyncio.CancelledError):
            pass
        finally:
            try:
                dst.close()
            except Exception:
                pass


# ---- processes: memory and CPU -------------------------------------------------------------


def vm_hwm_kib(pid: int) -> int | None:
    """The process's peak resident set (VmHWM), KiB; None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of the process (all its threads), seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, ValueError, IndexError):
        return None


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks[:8]) - idle) / CLK_TCK, sum(ticks[:8]) / CLK_TCK


def stop_procs(procs):
    """Proc.stop (SIGTERM, SIGKILL after 5 s) for every process at once."""
    def stop(p):
        try:
            p.stop()
        except Exception as e:  # keep stopping the others
            print(f"stopping {p.name}: {e}", file=sys.stderr)

    threads = [threading.Thread(target=stop, args=(p,)) for p in procs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# ---- settings --------------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="scripts/bench/pipeline.sh",
        description="Quire's pipeline throughput benchmark: api-server + workers over "
        "Postgres, SQS and S3 on moto and/or LocalStack; N profile PDF reports as fast as a "
        "pool of clients can create them, no faults. Prints reports/s, emulator requests per "
        "report by SQS action and S3 operation, the emulator's own SendMessage and PutObject "
        "rates, and peak RSS. The wrapper's own option: --emulator moto|localstack|both "
        "[both].",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--reports", type=int, default=1000, help="reports to create")
    p.add_argument("--users", type=int, default=200, help="accounts the reports are spread over")
    p.add_argument("--clients", type=int, default=32, help="client threads creating reports")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--wait-seconds", type=float, default=1200,
                   help="longest wait for every report to finish")
    p.add_argument("--stall-seconds", type=float, default=120,
                   help="stop waiting when no report finished for this long")
    p.add_argument("--rate-seconds", type=float, default=5.0,
                   help="length of each emulator-alone loop (SendMessage, PutObject)")
    p.add_argument("--proxy-rate-seconds", type=float, default=3.0,
                   help="length of the SendMessage loop through the proxy (0: skipped)")
    p.add_argument("--request-timeout", type=float, default=60.0,
                   help="client-side timeout of one API request, seconds")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="an extra (or overriding) environment variable for every Quire "
                   "process; repeatable (e.g. QUIRE_WORKER_CONCURRENCY=8)")
    p.add_argument("--profile", choices=("auto", "debug", "release"), default="auto",
                   help="which build to run: auto = release when it exists and is newer "
                   "than debug, else debug")
    p.add_argument("--target-dir", default=os.environ.get("CARGO_TARGET_DIR") or
                   os.path.expanduser("~/.cache/quire/target"), help="cargo's target directory")
    p.add_argument("--api-server", metavar="PATH", help="run this api-server binary")
    p.add_argument("--worker", metavar="PATH", help="run this worker binary")
    # Set by the wrapper.
    p.add_argument("--emulator", choices=("moto", "localstack"), help=argparse.SUPPRESS)
    p.add_argument("--emulator-version", default="", help=argparse.SUPPRESS)
    p.add_argument("--endpoint", help=argparse.SUPPRESS)
    p.add_argument("--emulator-pid", type=int, help=argparse.SUPPRESS)
    p.add_argument("--access-key", default="testing", help=argparse.SUPPRESS)
    p.add_argument("--secret-key", default="testing", help=argparse.SUPPRESS)
    p.add_argument("--result-file", help=argparse.SUPPRESS)
    p.add_argument("--summary", nargs="+", metavar="RESULT_JSON", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    a.extra_env = {}
    for item in a.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            p.error(f"--env expects KEY=VALUE, got {item!r}")
        a.extra_env[key] = value
    if not a.summary and not (a.emulator and a.endpoint):
        p.error("run me through scripts/bench/pipeline.sh (it starts Postgres and the emulator)")
    a.reports, a.users, a.clients = max(1, a.reports), max(1, a.users), max(1, a.clients)
    a.workers = max(1, a.workers)
    return a


# ---- the run ---------------------------------------------------------------------------------


class SourceAddressUsers(Users):
    """chaos.py's Users, signing in from several loopback addresses (127.0.0.10, .11, …): the
    api-server allows 20 sign-ins a minute per client address, and there are 200 users."""

    PER_ADDRESS = 18

    def signin(self, i) -> None:
        source = f"127.0.0.{10 + i // self.PER_ADDRESS}"
        body = json.dumps({"email": self.emails[i], "password": chaos.PASSWORD}).encode()
        with self.locks[i]:
            for _ in range(20):
                conn = http.client.HTTPConnection("127.0.0.1", self.api.port, timeout=30,
                                                  source_address=(source, 0))
                status, retry = 0, 1.0
                try:
                    conn.request("POST", "/auth/signin", body=body,
                                 headers={"content-type": "application/json"})
                    resp = conn.getresponse()
                    raw = resp.read()
                    status = resp.status
                    if status == 200:
                        self.tokens[i] = json.loads(raw)["access_token"]
                        self.signed_at[i] = time.monotonic()
                        return
                    if status == 429:
                        retry = float(resp.getheader("retry-after") or 5)
                except (OSError, http.client.HTTPException, ValueError):
                    pass
                finally:
                    conn.close()
                log(f"sign-in of user {i} from {source}: {status or 'no answer'}; retrying",
                    quiet=True)
                chaos.sleep(min(retry, 30))
                if STOP.is_set():
                    break
            raise RuntimeError(f"could not sign in {self.emails[i]}")


class Pipeline:
    def __init__(self, a, log_dir: str):
        self.a = a
        self.s = a  # for chaos.Bench.binaries: profile, target_dir, api_server, worker
        self.log_dir = log_dir
        self.info: dict = {}
        self.run_id = secrets.token_hex(4)
        self.procs: list[Proc] = []
        self.api_proc: Proc | None = None
        self.workers: list[Proc] = []
        self.proxy: CountingProxy | None = None
        self.hwm: dict[str, int] = {}
        self.pids: dict[str, int] = {}
        self.warnings: list[str] = []

    binaries = chaos.Bench.binaries
    commit = chaos.Bench.commit

    def boto(self, service, endpoint=None):
        import boto3
        from botocore.config import Config
        return boto3.client(service, endpoint_url=endpoint or self.a.endpoint, region_name=REGION,
                            aws_access_key_id=self.a.access_key,
                            aws_secret_access_key=self.a.secret_key,
                            config=Config(s3={"addressing_style": "path"},
                                          retries={"max_attempts": 3},
                                          connect_timeout=5, read_timeout=30))

    def psql(self, query: str) -> list[list[str]]:
        psql = os.environ.get("QUIRE_PIPELINE_PSQL", "")
        psql = psql if os.access(psql, os.X_OK) else (shutil.which("psql") or "psql")
        out = subprocess.run([psql, "-X", "-q", "-At", "-F", "\t", "-d",
                              os.environ["DATABASE_URL"], "-c", query],
                             capture_output=True, text=True, timeout=30, check=True).stdout
        return [line.split("\t") for line in out.splitlines() if line]

    def setup(self):
        a = self.a
        bin_dir = os.path.join(self.log_dir, "bin")
        os.makedirs(bin_dir)
        api_bin, worker_bin = (shutil.copy2(b, bin_dir) for b in self.binaries())
        self.info["binaries"] = {os.path.basename(b): describe_binary(b)
                                 for b in (api_bin, worker_bin)}
        if abs(os.path.getmtime(api_bin) - os.path.getmtime(worker_bin)) > 120:
            self.warnings.append("api-server and worker were built more than two minutes "
                                 "apart: maybe from different sources")
        self.info["commit"] = self.commit()
        if a.emulator_pid:
            self.pids[a.emulator] = a.emulator_pid

        # Queues and bucket as scripts/localstack-resources.py makes them; queue URLs from
        # CreateQueue (LocalStack's differ from moto's).
        sqs = self.boto("sqs")
        dlq = sqs.create_queue(QueueName="quire-bench-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        work = sqs.create_queue(QueueName="quire-bench-work", Attributes={
            "VisibilityTimeout": "60",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                         "maxReceiveCount": "10"}),
        })["QueueUrl"]
        self.queue_urls = {"work": work, "dlq": dlq}
        self.bucket = "quire-bench-reports"
        self.boto("s3").create_bucket(Bucket=self.bucket)

        self.proxy = CountingProxy(urllib.parse.urlsplit(a.endpoint).port)
        self.proxy_url = f"http://127.0.0.1:{self.proxy.start()}"

        def via_proxy(url):
            return self.proxy_url + urllib.parse.urlsplit(url).path

        api_port = free_port()
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("AWS_", "QUIRE_")) and k != "DATABASE_URL"}
        base.update({
            "DATABASE_URL": os.environ["DATABASE_URL"],
            "RUST_LOG": os.environ.get("RUST_LOG", "info"),
            "QUIRE_QUEUE": "sqs",
            "QUIRE_SQS_QUEUE_URL": via_proxy(work),
            "QUIRE_SQS_DEAD_LETTER_QUEUE_URL": via_proxy(dlq),
            "QUIRE_STORAGE": "s3",
            "QUIRE_S3_BUCKET": self.bucket,
            "QUIRE_S3_FORCE_PATH_STYLE": "true",
            "AWS_ENDPOINT_URL": self.proxy_url,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": a.access_key,
            "AWS_SECRET_ACCESS_KEY": a.secret_key,
            "AWS_EC2_METADATA_DISABLED": "true",
        })
        base.update(a.extra_env)
        api_env = dict(base, QUIRE_LISTEN=f"127.0.0.1:{api_port}",
                       QUIRE_JWT_SECRET=secrets.token_hex(32), QUIRE_BCRYPT_COST="4",
                       # Benchmark users make thousands of reports, and sign up from one
                       # address: no per-user quota, no sign-up limit per address.
                       QUIRE_QUOTA_UNFINISHED="0", QUIRE_QUOTA_PER_HOUR="0",
                       QUIRE_SIGNUP_PER_ADDRESS_PER_HOUR="0")
        api_env.update(a.extra_env)
        self.passed_env = {k: base[k] for k in sorted(base)
                           if k.startswith(("QUIRE_", "AWS_")) or k == "RUST_LOG"}
        with open(os.path.join(self.log_dir, "env.json"), "w") as f:
            json.dump(self.passed_env, f, indent=2)

        self.api_proc = Proc("api-server", [api_bin], api_env,
                             os.path.join(self.log_dir, "api-server.log"))
        self.pids["api-server"] = self.api_proc.start()
        self.procs.append(self.api_proc)
        if not chaos.wait_http(f"http://127.0.0.1:{api_port}/healthz", 120, self.api_proc):
            raise SystemExit("api-server did not come up:\n" + tail(self.api_proc.log_path))
        for i in range(a.workers):
            env = dict(base, QUIRE_HEALTH_LISTEN=f"127.0.0.1:{free_port()}")
            w = Proc(f"worker-{i}", [worker_bin], env,
                     os.path.join(self.log_dir, f"worker-{i}.log"))
            self.pids[w.name] = w.start()
            self.workers.append(w)
            self.procs.append(w)
        for w in self.workers:
            if not chaos.wait_http(f"http://{w.env['QUIRE_HEALTH_LISTEN']}/healthz", 60, w):
                raise SystemExit(f"{w.name} did not come up:\n" + tail(w.log_path))

        self.api = Api(api_port, a.request_timeout)
        self.users = SourceAddressUsers(self.api, a.users, self.run_id)
        t0 = time.monotonic()
        self.users.setup()
        log(f"{a.users} users signed up and in ({time.monotonic() - t0:.1f} s)")
        self.client = Client(self.api, self.users, self.run_id)
        threading.Thread(target=self.sample_memory, name="memory", daemon=True).start()

    def sample_memory(self):
        while not STOP.is_set():
            self.read_memory()
            chaos.sleep(0.5)

    def read_memory(self):
        for name, pid in list(self.pids.items()):
            kib = vm_hwm_kib(pid)
            if kib is not None:
                self.hwm[name] = max(self.hwm.get(name, 0), kib)

    def cpu_snapshot(self) -> dict:
        snap = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        t = os.times()
        snap["harness (client + proxy)"] = t.user + t.system
        snap["(machine busy)"], snap["(machine total)"] = machine_cpu()
        return snap

    def db_counts(self) -> dict:
        rows = self.psql("SELECT status, count(*), "
                         "extract(epoch from max(completed_at)) FROM reports GROUP BY status")
        return {r[0]: (int(r[1]), float(r[2]) if r[2] else None) for r in rows}

    def run(self) -> dict:
        a = self.a
        for p in self.procs:
            if not p.alive():
                raise SystemExit(f"{p.name} exited before the run:\n" + tail(p.log_path))
        log(f"creating {a.reports} reports from {a.clients} client threads over {a.users} "
            f"users; then waiting for all of them")
        self.proxy.reset()
        cpu0 = self.cpu_snapshot()
        counter = itertools.count()
        post_lat: list[float] = []
        post_fail = collections.Counter()
        lat_lock = threading.Lock()
        first_post = time.time()

        def create():
            while not STOP.is_set():
                i = next(counter)
                if i >= a.reports:
                    return
                key = f"pipeline-{self.run_id}-{i}"
                for _ in range(4):
                    t = time.monotonic()
                    r = self.client.post(key, i % a.users, "load")
                    with lat_lock:
                        post_lat.append(time.monotonic() - t)
                        if r.status != 202:
                            post_fail[r.status or r.err] += 1
                    if r.status == 202 or (400 <= r.status < 500 and r.status != 429):
                        break
                    chaos.sleep(1.0)

        creators = [threading.Thread(target=create, name=f"create-{c}", daemon=True)
                    for c in range(a.clients)]
        for t in creators:
            t.start()
        posts_done = None
        deadline = time.monotonic() + a.wait_seconds
        last_progress, last_finished, last_note = time.monotonic(), -1, 0.0
        counts: dict = {}
        while not STOP.is_set():
            if posts_done is None and not any(t.is_alive() for t in creators):
                posts_done = time.time()
                log(f"all POSTs answered after {posts_done - first_post:.1f} s: "
                    f"{len(self.client.accepted_load)} accepted")
            counts = self.db_counts()
            finished = sum(counts.get(s, (0,))[0] for s in chaos.TERMINAL)
            if finished != last_finished:
                last_finished, last_progress = finished, time.monotonic()
            if posts_done is not None and finished >= len(self.client.accepted_load):
                break
            if time.monotonic() - last_note >= 10:
                last_note = time.monotonic()
                log(f"  {time.time() - first_post:6.1f} s: accepted "
                    f"{len(self.client.accepted_load)}, " +
                    ", ".join(f"{k} {v[0]}" for k, v in sorted(counts.items())))
            for p in self.procs:
                if not p.alive() and p.name not in (w.split(":")[0] for w in self.warnings):
                    self.warnings.append(f"{p.name}: exited during the run (code "
                                         f"{p.popen.returncode})")
                    log(self.warnings[-1])
            if time.monotonic() > deadline:
                self.warnings.append(f"gave up waiting after {a.wait_seconds:g} s")
                break
            if posts_done is not None and time.monotonic() - last_progress > a.stall_seconds:
                self.warnings.append(f"gave up: no report finished for {a.stall_seconds:g} s")
                break
            chaos.sleep(0.5)
        done_wall = time.time()
        requests, put_bytes = self.proxy.snapshot()
        cpu1 = self.cpu_snapshot()
        self.read_memory()
        hwm = dict(self.hwm)  # the pipeline's peaks, before the emulator-alone loops
        log(f"done after {done_wall - first_post:.1f} s: " +
            ", ".join(f"{k} {v[0]}" for k, v in sorted(counts.items())))
        lat = self.psql(
            "SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY "
            "extract(epoch from completed_at - created_at)), "
            "extract(epoch from min(created_at)) FROM reports WHERE status = 'completed'")
        pcts, first_created = [], None
        if lat and lat[0][0]:
            pcts = [round(float(x), 2) for x in lat[0][0].strip("{}").split(",")]
            first_created = float(lat[0][1])

        # Stop the pipeline, then measure the emulator alone.
        stop_procs(self.procs)
        if (rate := self.emulator_rates(put_bytes)) is None:
            rate = {}

        completed, last_completed = counts.get("completed", (0, None))
        elapsed = (last_completed - first_post) if last_completed else None
        reports_per_s = completed / elapsed if elapsed and elapsed > 0 else None
        post_lat.sort()
        window = done_wall - first_post
        total = sum(requests.values())
        cpu = {}
        for name in cpu1:
            if cpu0.get(name) is not None and cpu1.get(name) is not None:
                cpu[name] = round(cpu1[name] - cpu0[name], 1)
        ceiling = emulator_ceiling(requests, completed, rate)
        fig = {
            "emulator": a.emulator,
            "emulator_version": a.emulator_version,
            "reports": a.reports,
            "users": a.users,
            "clients": a.clients,
            "workers": a.workers,
            "accepted": len(self.client.accepted_load),
            "completed": completed,
            "failed": counts.get("failed", (0,))[0],
            "cancelled": counts.get("cancelled", (0,))[0],
            "unfinished": sum(counts.get(s, (0,))[0] for s in chaos.UNFINISHED),
            "post_failures": {str(k): v for k, v in post_fail.items()},
            "seconds": round(elapsed, 2) if elapsed else None,
            "reports_per_s": round(reports_per_s, 2) if reports_per_s else None,
            "post_seconds": round(posts_done - first_post, 2) if posts_done else None,
            "posts_per_s": round(a.reports / (posts_done - first_post), 1)
            if posts_done and posts_done > first_post else None,
            "post_p50": round(post_lat[len(post_lat) // 2], 3) if post_lat else None,
            "post_p99": round(post_lat[min(len(post_lat) - 1, int(len(post_lat) * .99))], 3)
            if post_lat else None,
            "first_post_to_first_created": round(first_created - first_post, 3)
            if first_created else None,
            "latency_p50_p95_p99": pcts,
            "emulator_requests": total,
            "emulator_requests_per_report": round(total / completed, 2) if completed else None,
            "requests_by_operation": dict(sorted(requests.items(), key=lambda kv: -kv[1])),
            "put_object_mean_bytes": round(put_bytes[1] / put_bytes[0]) if put_bytes[0] else None,
            "emulator_rate": rate,
            "ratio_reports_per_send_message": round(reports_per_s / rate["send_message_per_s"], 4)
            if reports_per_s and rate.get("send_message_per_s") else None,
            **ceiling,
            "ratio_reports_per_ceiling": round(reports_per_s / ceiling["ceiling_reports_per_s"], 4)
            if reports_per_s and ceiling.get("ceiling_reports_per_s") else None,
            "peak_rss_mib": {k: round(v / 1024, 1) for k, v in hwm.items()},
            "cpu_seconds": cpu,
            "window_seconds": round(window, 2),
            "cores": os.cpu_count(),
            "profile": self.info.get("profile"),
            "binaries": self.info.get("binaries"),
            "commit": self.info.get("commit"),
            "warnings": self.warnings,
            "log_dir": self.log_dir,
        }
        return fig

    def emulator_rates(self, put_bytes) -> dict | None:
        """One boto3 client against the emulator alone: SendMessage in a loop (directly,
        then through the proxy), then PutObject in a loop."""
        a = self.a
        out = {}
        try:
            sqs = self.boto("sqs")
            url = sqs.create_queue(QueueName="quire-bench-rate")["QueueUrl"]
            body = json.dumps({"report_id": "0" * 36, "attempt": 1, "pad": "x" * 40})

            def loop(call, seconds):
                for _ in range(3):  # warm up the connection
                    call(-1)
                n, t0 = 0, time.monotonic()
                end = t0 + seconds
                while time.monotonic() < end and not STOP.is_set():
                    call(n)
                    n += 1
                took = time.monotonic() - t0
                return n, took

            n, took = loop(lambda i: sqs.send_message(QueueUrl=url, MessageBody=body),
                           a.rate_seconds)
            out["send_message_per_s"] = round(n / took, 1)
            out["send_message_n"] = n
            out["send_message_seconds"] = round(took, 1)
            log(f"emulator alone: {n} SendMessage in {took:.1f} s = {n / took:.1f}/s")
            if a.proxy_rate_seconds > 0:
                psqs = self.boto("sqs", endpoint=self.proxy_url)
                purl = self.proxy_url + urllib.parse.urlsplit(url).path
                n, took = loop(lambda i: psqs.send_message(QueueUrl=purl, MessageBody=body),
                               a.proxy_rate_seconds)
                out["send_message_via_proxy_per_s"] = round(n / took, 1)
                log(f"through the proxy: {n} SendMessage in {took:.1f} s = {n / took:.1f}/s")
            size = round(put_bytes[1] / put_bytes[0]) if put_bytes[0] else 4096
            data = os.urandom(size)
            s3 = self.boto("s3")
            n, took = loop(lambda i: s3.put_object(Bucket=self.bucket, Key=f"rate/{i}", Body=data),
                           a.rate_seconds)
            out["put_object_per_s"] = round(n / took, 1)
            out["put_object_bytes"] = size
            log(f"emulator alone: {n} PutObject of {size} B in {took:.1f} s = {n / took:.1f}/s")
            sqs.purge_queue(QueueUrl=url)
        except Exception as e:  # a figure missing, not the run
            self.warnings.append(f"emulator rate loop failed: {type(e).__name__}: {e}")
            log(self.warnings[-1])
        return out


def emulator_ceiling(requests: dict, completed: int, rate: dict) -> dict:
    """What the emulator alone could serve of this pipeline's requests, from its own
    single-client rates: each SQS request costing a SendMessage, each S3 request a
    PutObject (batch requests cost more, so this ceiling is if anything too high). Also
    the SQS requests per report that a pipeline at 0.8 x SendMessage/s would have to make
    do with, beside this pipeline's S3 requests."""
    send, put = rate.get("send_message_per_s"), rate.get("put_object_per_s")
    if not (completed and send and put):
        return {}
    sqs = sum(n for op, n in requests.items() if op.startswith("SQS ")) / completed
    s3 = sum(n for op, n in requests.items() if op.startswith("S3 ")) / completed
    return {
        "ceiling_reports_per_s": round(1 / (s3 / put + sqs / send), 1),
        "sqs_per_report_at_0_8": round(1.25 - s3 * send / put, 3),
    }


# ---- printing ----------------------------------------------------------------------------------


def fmt(x, unit="", digits=1):
    if x is None:
        return "-"
    return f"{x:,.{digits}f}{unit}" if isinstance(x, float) else f"{x:,}{unit}"


def op_order(label: str):
    kind, _, rest = label.partition(" ")
    name = rest.split(" ")[0]
    first = SQS_ACTIONS_FIRST.index(name) if kind == "SQS" and name in SQS_ACTIONS_FIRST else 99
    return (0 if kind == "SQS" else 1 if kind == "S3" else 2, first, label)


def print_block(fig: dict):
    name = f"{fig['emulator']} {fig['emulator_version']}".strip()
    rate = fig["emulator_rate"]
    done = fig["completed"] or 0
    print()
    print("=" * 78)
    print(f"Quire pipeline throughput on {name}: {fig['profile']} binaries, {fig['workers']} "
          f"workers, {fig['clients']} clients, {fig['users']} users, {fig['cores']} cores")
    print(f"  binaries {fig['binaries']}; work tree at {fig['commit']}")
    print("=" * 78)
    rows = [
        ("reports completed", f"{done:,} of {fig['reports']:,}",
         f"accepted {fig['accepted']:,}, failed {fig['failed']}, cancelled {fig['cancelled']}, "
         f"unfinished {fig['unfinished']}"),
        ("first POST -> last completion", fmt(fig["seconds"], " s", 1), ""),
        ("reports/s", fmt(fig["reports_per_s"], "", 2), "completed / that time"),
        ("POST phase", fmt(fig["post_seconds"], " s"),
         f"{fmt(fig['posts_per_s'])} POST/s; POST p50 {fmt(fig['post_p50'], ' s', 3)}, "
         f"p99 {fmt(fig['post_p99'], ' s', 3)}"
         + (f"; non-202: {fig['post_failures']}" if fig["post_failures"] else "")),
        ("report latency p50/p95/p99", " / ".join(f"{x:g}" for x in fig["latency_p50_p95_p99"])
         + " s" if fig["latency_p50_p95_p99"] else "-", "created_at -> completed_at"),
        ("emulator requests per report", fmt(fig["emulator_requests_per_report"], "", 2),
         f"{fig['emulator_requests']:,} requests through the proxy in the window"),
    ]
    for op in sorted(fig["requests_by_operation"], key=op_order):
        n = fig["requests_by_operation"][op]
        rows.append((f"  {op}", fmt(n / done, "", 3) if done else "-", f"{n:,}"))
    rows += [
        ("emulator alone: SendMessage/s", fmt(rate.get("send_message_per_s")),
         "1 boto3 client, direct, " + (f"{rate['send_message_n']:,} in {rate['send_message_seconds']} s"
                                        if "send_message_n" in rate else "")),
        ("  SendMessage/s via the proxy", fmt(rate.get("send_message_via_proxy_per_s")),
         "the same through the harness proxy"),
        ("emulator alone: PutObject/s", fmt(rate.get("put_object_per_s")),
         f"1 boto3 client, direct, {fmt(rate.get('put_object_bytes'))} B bodies "
         "(the pipeline's mean)"),
        ("reports/s / SendMessage/s", fmt(fig["ratio_reports_per_send_message"], "", 4),
         "pipeline throughput vs the emulator's own"),
        ("emulator ceiling reports/s", fmt(fig.get("ceiling_reports_per_s")),
         "its rates alone, for this pipeline's requests per report"),
        ("reports/s / ceiling", fmt(fig.get("ratio_reports_per_ceiling"), "", 4),
         "the rest: CPU shared with Postgres, Quire and the harness"),
        ("SQS req/report 0.8 would allow", fmt(fig.get("sqs_per_report_at_0_8"), "", 3),
         "beside this pipeline's S3 requests, for 0.8 x SendMessage/s"),
    ]
    for proc, mib in sorted(fig["peak_rss_mib"].items()):
        rows.append((f"peak RSS {proc}", f"{mib:.1f} MiB", "VmHWM"))
    w = fig["window_seconds"]
    cpu = fig["cpu_seconds"]
    total = cpu.pop("(machine total)", None)
    busy = cpu.pop("(machine busy)", None)
    rows.append(("CPU in the window", f"{busy:.0f} of {total:.0f} s" if busy and total else "-",
                 f"{w:.0f} s x {fig['cores']} cores; " +
                 ", ".join(f"{k} {v:g}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]))))
    width = max(len(r[0]) for r in rows)
    for label, value, note in rows:
        print(f"  {label:<{width}}  {value:>12}  {note}")
    for warning in fig["warnings"]:
        print(f"  WARNING: {warning}")


def print_summary(figs: list[dict]):
    names = [f"{f['emulator']} {f['emulator_version']}".strip() for f in figs]
    ops = sorted({op for f in figs for op in f["requests_by_operation"]}, key=op_order)

    def per_report(f, op):
        n = f["requests_by_operation"].get(op, 0)
        return fmt(n / f["completed"], "", 3) if f["completed"] else "-"

    rows = [
        ("reports completed", [f"{f['completed']:,}/{f['reports']:,}" for f in figs]),
        ("seconds (first POST -> last completion)", [fmt(f["seconds"]) for f in figs]),
        ("reports/s", [fmt(f["reports_per_s"], "", 2) for f in figs]),
        ("report latency p50 (s)",
         [fmt(f["latency_p50_p95_p99"][0], "", 2) if f["latency_p50_p95_p99"] else "-"
          for f in figs]),
        ("emulator requests per report",
         [fmt(f["emulator_requests_per_report"], "", 2) for f in figs]),
    ] + [(f"  {op}", [per_report(f, op) for f in figs]) for op in ops] + [
        ("emulator alone: SendMessage/s",
         [fmt(f["emulator_rate"].get("send_message_per_s")) for f in figs]),
        ("  SendMessage/s via the proxy",
         [fmt(f["emulator_rate"].get("send_message_via_proxy_per_s")) for f in figs]),
        ("emulator alone: PutObject/s",
         [fmt(f["emulator_rate"].get("put_object_per_s")) for f in figs]),
        ("reports/s / SendMessage/s",
         [fmt(f["ratio_reports_per_send_message"], "", 4) for f in figs]),
        ("emulator ceiling reports/s", [fmt(f.get("ceiling_reports_per_s")) for f in figs]),
        ("reports/s / ceiling", [fmt(f.get("ratio_reports_per_ceiling"), "", 4) for f in figs]),
        ("SQS req/report 0.8 would allow",
         [fmt(f.get("sqs_per_report_at_0_8"), "", 3) for f in figs]),
        ("peak RSS api-server (MiB)", [fmt(f["peak_rss_mib"].get("api-server")) for f in figs]),
        ("peak RSS workers (MiB, max)",
         [fmt(max((v for k, v in f["peak_rss_mib"].items() if k.startswith("worker")),
                  default=None)) for f in figs]),
        ("peak RSS emulator (MiB)", [fmt(f["peak_rss_mib"].get(f["emulator"])) for f in figs]),
        ("emulator CPU s in the window",
         [fmt(f["cpu_seconds"].get(f["emulator"])) for f in figs]),
    ]
    width = max(len(r[0]) for r in rows)
    colw = max(14, *(len(n) for n in names))
    print()
    print("=" * 78)
    print("Summary: Quire pipeline throughput per emulator")
    print("=" * 78)
    print(f"  {'':<{width}}  " + "  ".join(f"{n:>{colw}}" for n in names))
    for label, values in rows:
        print(f"  {label:<{width}}  " + "  ".join(f"{v:>{colw}}" for v in values))
    for f in figs:
        for warning in f["warnings"]:
            print(f"  WARNING ({f['emulator']}): {warning}")


def main(argv=None) -> int:
    a = parse_args(sys.argv[1:] if argv is None else argv)
    # The proxy's thread shares the GIL with the client threads and the rate loops: hand it
    # over sooner than the default 5 ms, so the proxy adds less latency.
    sys.setswitchinterval(0.0005)
    if a.summary:
        figs = []
        for path in a.summary:
            try:
                with open(path) as f:
                    figs.append(json.load(f))
            except (OSError, ValueError) as e:
                print(f"no result in {path}: {e}", file=sys.stderr)
        if figs:
            print_summary(figs)
            print("PIPELINE_SUMMARY " + json.dumps(figs, sort_keys=True))
        return 0 if len(figs) == len(a.summary) else 1
    log_dir = tempfile.mkdtemp(prefix=f"quire-pipeline.{a.emulator}.")
    chaos.EVENTS_FILE = open(os.path.join(log_dir, "events.log"), "a")

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(f"logs: {log_dir}", flush=True)
    bench = Pipeline(a, log_dir)
    code = 0
    try:
        bench.setup()
        log(f"run {bench.run_id} on {a.emulator} {a.emulator_version} at {a.endpoint}: "
            f"{bench.info['profile']} binaries {bench.info['binaries']}, work tree at "
            f"{bench.info['commit']}")
        fig = bench.run()
        line = json.dumps(fig, sort_keys=True)
        for path in filter(None, (os.path.join(log_dir, "result.json"), a.result_file)):
            with open(path, "w") as f:
                f.write(line + "\n")
        print_block(json.loads(line))
        print("PIPELINE_RESULT " + line, flush=True)
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        code = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        STOP.set()
        stop_procs(bench.procs)
        if bench.proxy is not None:
            bench.proxy.stop()
        shutil.rmtree(os.path.join(log_dir, "bin"), ignore_errors=True)
        print(f"logs: {log_dir}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
