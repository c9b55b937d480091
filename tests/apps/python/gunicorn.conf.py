# Read by gunicorn from the working directory (/app). It binds 0.0.0.0:$PORT by itself when
# PORT is set; the Procfile gives the workers.
import os

# Requests in flight get this long after SIGTERM: within the dyno's 30 s of grace.
graceful_timeout = 20


def when_ready(server):
    print(f"listening on port {os.environ.get('PORT')}, "
          f"WEB_CONCURRENCY={os.environ.get('WEB_CONCURRENCY')}", flush=True)


def on_exit(server):
    # The master's last act once every worker has finished its requests.
    print("shutdown hook ran", flush=True)
