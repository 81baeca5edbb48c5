"""The Celery side of `just bench`: the same echo as Surge's, on the same RabbitMQ, configured
as a job system that loses nothing would be (acks_late: a worker acknowledges a task only after
running it; results come back over `rpc://`, a reply queue per client).

    python3 echo.py worker              run a worker (the bench starts it)
    python3 echo.py drive SECONDS N     N callers for SECONDS, one job at a time each
    python3 echo.py pipeline SECONDS N  one client keeping N jobs in flight for SECONDS

The drivers print one JSON object: requests, errors, seconds, p50/p99 in ms.

Environment: SURGE_BENCH_AMQP (the broker URL), SURGE_BENCH_QUEUE (a queue of this run's).
"""

import json
import os
import statistics
import sys
import threading
import time

from celery import Celery

app = Celery(
    "surge_bench_echo",
    broker=os.environ.get("SURGE_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672//"),
    backend="rpc://",
)
QUEUE = os.environ.get("SURGE_BENCH_QUEUE", "celery-bench")
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue=QUEUE,
    result_persistent=False,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="echo")
def echo(value):
    return value


def percentile(values, p):
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def report(latencies, errors, seconds):
    print(json.dumps({
        "requests": len(latencies),
        "errors": errors,
        "seconds": seconds,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }))


def drive(seconds, callers):
    """Each caller sends one job and waits for its result, again and again."""
    latencies, errors = [], [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def caller():
        mine = []
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                echo.delay({"hello": "world"}).get(timeout=30)
                mine.append(time.perf_counter() - started)
            except Exception:
                with lock:
                    errors[0] += 1
        with lock:
            latencies.extend(mine)

    started = time.monotonic()
    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report(latencies, errors[0], time.monotonic() - started)


def pipeline(seconds, window):
    """One client keeps `window` jobs in flight: sends, then collects the oldest."""
    latencies, errors = [], 0
    in_flight = []
    started = time.monotonic()
    deadline = started + seconds
    while time.monotonic() < deadline or in_flight:
        while time.monotonic() < deadline and len(in_flight) < window:
            in_flight.append((time.perf_counter(), echo.delay({"hello": "world"})))
        sent, result = in_flight.pop(0)
        try:
            result.get(timeout=30)
            latencies.append(time.perf_counter() - sent)
        except Exception:
            errors += 1
    report(latencies, errors, time.monotonic() - started)


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    if role == "worker":
        app.worker_main(["worker", "--loglevel=WARNING", "--without-gossip", "--without-mingle",
                         "--without-heartbeat", "--pool=prefork",
                         f"--concurrency={os.environ.get('SURGE_BENCH_CONCURRENCY', '4')}"])
    elif role == "drive":
        drive(float(sys.argv[2]), int(sys.argv[3]))
    elif role == "pipeline":
        pipeline(float(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit(__doc__)
