"""A small WSGI app, as a Python user deploys one under gunicorn, with the endpoints hostd's
real-app tests look at."""

import getpass
import os
import signal
import subprocess
import sys
import threading
import time
from urllib.parse import parse_qs

LIMIT_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")

# A child that takes memory until the kernel's OOM killer ends it; the app itself stays up.
# The child volunteers to be the one killed (oom_score_adj), as a worker pool's children do.
HOG = """
try:
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write("1000")
except OSError:
    pass
hog = []
while True:
    hog.append(b"x" * (8 << 20))
"""


def memory_limit():
    for path in LIMIT_FILES:
        try:
            with open(path) as f:
                return 200, f.read().strip()
        except FileNotFoundError:
            continue
        except OSError as e:
            return 500, f"{path}: {e}"
    return 500, "no memory limit in /sys/fs/cgroup"


def whoami():
    try:
        return 200, getpass.getuser()
    except Exception as e:  # noqa: BLE001 - what the lookup says is the answer
        return 500, f"getpass.getuser(): {e!r}"


def start_oom_child():
    child = subprocess.Popen([sys.executable, "-c", HOG])
    print(f"oom child {child.pid} started", flush=True)

    def wait():
        rc = child.wait()
        how = f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}"
        print(f"oom child {child.pid} ended: {how}", flush=True)

    threading.Thread(target=wait, daemon=True).start()
    return 202, f"oom child {child.pid} started"


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    if path == "/":
        status, body = 200, "ok"
    elif path == "/slow":
        ms = int(query.get("ms", "1000"))
        print(f"slow request started ({ms} ms)", flush=True)
        time.sleep(ms / 1000)
        status, body = 200, f"slow request completed after {ms} ms"
    elif path == "/limit":
        status, body = memory_limit()
    elif path == "/whoami":
        status, body = whoami()
    elif path == "/env":
        name = query.get("name", "")
        status, body = (200, os.environ[name]) if name in os.environ else (404, f"{name} is not set")
    elif path == "/oom":
        status, body = start_oom_child()
    else:
        status, body = 404, "not found"
    data = body.encode()
    reason = {200: "OK", 202: "Accepted", 404: "Not Found", 500: "Internal Server Error"}[status]
    start_response(f"{status} {reason}",
                   [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]
