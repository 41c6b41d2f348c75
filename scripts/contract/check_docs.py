#!/usr/bin/env python3
"""Loads the docs page (`/docs`) in headless Chromium and checks that it works offline.

    check_docs.py API_URL WORK_DIR

- every operation of `API_URL/openapi.json` is listed on the page once it has loaded
  (Swagger UI renders an `opblock-summary-path` per operation when it is not collapsed);
- the page requested nothing from any host but the API's: Chromium's network log
  (`--log-net-log`) records every request, with the origin that initiated it.

Chromium runs as the machine's probe runs it: headless, no sandbox (root), and with its
own background traffic (component updates, sync, safe browsing) off, so that any request
to another host in the log comes from the page.
"""

import html
import json
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlparse


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("chromium is not installed (Debian: apt-get install chromium)")


def main() -> None:
    api, work = sys.argv[1].rstrip("/"), Path(sys.argv[2])
    work.mkdir(parents=True, exist_ok=True)
    document = json.load(urllib.request.urlopen(f"{api}/openapi.json"))
    expected = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }

    net_log = work / "net-log.json"
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        f"--user-data-dir={work / 'profile'}",
        f"--log-net-log={net_log}",
        "--net-log-capture-mode=Default",
        # Lets the page's scripts run and fetch the document before the DOM is printed.
        "--virtual-time-budget=20000",
        "--dump-dom",
        f"{api}/docs/",
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if run.returncode != 0:
        sys.exit(f"chromium failed ({run.returncode}):\n{run.stderr[-2000:]}")
    dom = run.stdout

    # <div class="opblock opblock-get" ...> ... opblock-summary-method">GET</span> ...
    # <span class="opblock-summary-path" data-path="/reports/{id}">
    listed = set()
    for block in re.finditer(r'class="opblock opblock-(\w+)[^"]*"(.*?)data-path="([^"]+)"', dom, re.S):
        listed.add((block.group(1).upper(), html.unescape(block.group(3))))
    missing = sorted(expected - listed)
    if missing:
        (work / "dom.html").write_text(dom)
        sys.exit(f"the docs page does not list {len(missing)} operations: {missing} (DOM in {work}/dom.html)")
    print(f"docs: {len(listed)} operations listed (of {len(expected)} in the document)")

    # Every request the page made, from the network log. Chromium's own background
    # requests (component updates, account checks, autofill) start with no initiating
    # origin ("not an origin"); a request the page or anything it loaded made carries the
    # page's origin (or is the page itself: the main frame).
    log = json.loads(net_log.read_text())
    event_types = {value: name for name, value in log["constants"]["logEventTypes"].items()}
    api_origin = f"{urlparse(api).scheme}://{urlparse(api).netloc}"
    page_requests, browser_requests = [], []
    for event in log.get("events", []):
        if event_types.get(event["type"]) != "URL_REQUEST_START_JOB":
            continue
        params = event.get("params", {})
        if "url" not in params:
            continue
        from_page = params.get("request_type") == "main frame" or params.get("initiator", "").startswith(
            ("http://", "https://")
        )
        (page_requests if from_page else browser_requests).append(params["url"])
    if not page_requests:
        sys.exit("the network log shows no request from the page: the check saw nothing")
    foreign = sorted(url for url in page_requests if not url.startswith(api_origin + "/"))
    if foreign:
        sys.exit(f"the docs page requested other hosts: {foreign}")
    print(
        f"docs: the page made {len(page_requests)} requests, all to {api_origin}; none to another host "
        f"({len(browser_requests)} requests of Chromium's own, not the page's, left aside)"
    )

if __name__ == "__main__":
    main()
