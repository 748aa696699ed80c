"""Gunicorn settings; every value can be overridden from the environment."""

import glob
import os
import resource

bind = os.environ.get("DANMAKU_BIND", "127.0.0.1:8000")


def _open_files() -> int:
    """Raise this process's open-file limit (workers inherit it) to
    GUNICORN_OPEN_FILES, by default as far as allowed (the hard limit): one
    file per viewer's connection, and a soft limit of 1,024 (a common
    default) would cap a crowd node at about a thousand viewers a process.
    The limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = int(os.environ.get("GUNICORN_OPEN_FILES") or 0) or hard
    if wanted == resource.RLIM_INFINITY:
        wanted = 1 << 20  # macOS refuses an unlimited soft limit
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if wanted > soft or soft == resource.RLIM_INFINITY:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (OSError, ValueError):
            return soft
    return wanted


open_files = _open_files()
# Four processes on two cores: each is one event loop answering polls, so
# two per core cost little, and while one drains (a recycle, a reload) or
# restarts after a crash, the other three take its viewers: a third more
# each, within their connection caps (worker_connections).
workers = int(os.environ.get("GUNICORN_WORKERS", "4"))
# gthread, plus viewers' polls answered on the worker's event loop instead
# of a pool thread (danmaku_site.pullworker): several times the pulls per
# core. Threads serve everything else, so a request waiting on the database
# holds one thread, not the worker. "gthread" turns the loop answers off.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "danmaku_site.pullworker.PullWorker")
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# Connections a worker holds open at once. A viewer keeps its connection
# between polls, so a pull node facing viewers without nginx in front needs
# one per viewer it serves; past it, new connections wait in the listen
# queue for another worker. Half the open-file limit: each connection is a
# file, and a worker whose neighbour drains takes a share of its viewers
# without ever running out (accept failing with EMFILE); with 4 workers and
# 20,000 files a process, 40,000 connections a node, 30,000 with one
# draining. The workers share one listening socket and each accepts while
# below its cap, so the cap also bounds how unevenly a connect storm spreads.
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS") or min(10_000, open_files // 2))
# Connections the kernel queues for the workers to accept (a connect storm:
# 20,000 viewers within a second). Linux caps it at net.core.somaxconn
# (4,096 on the test machine; raise it on a production host); past the queue
# a new connection's handshake is dropped and retried by the client a second
# later.
backlog = int(os.environ.get("GUNICORN_BACKLOG", "65535"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT_SECONDS", "30"))
# A stopping worker (recycle, reload, graceful stop) drains within this: on
# a reload it serves until its successors have started (10 s at most), then
# each viewer gets one poll interval (up to the keep-alive timeout, 6 s) to
# come back and be told "Connection: close", then 2 s of closing linger.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT_SECONDS", "20"))
# Longer than the longest next_ms an answer may carry (DANMAKU_MAX_NEXT_MS:
# a quiet room's interval, or one delivery control stretched) plus a slow
# network's round trip: a viewer's next pull reuses its connection instead
# of paying for a new one (about 2.5 times a kept-alive poll's server CPU,
# just when the node is shedding load), and does not race the server
# closing it. An idle connection costs a file and ~2.6 KB. nginx's upstream
# keep-alive (4 s) stays below it, so gunicorn never closes a connection
# nginx is reusing. A draining worker gives idle viewers less
# (danmaku_site.pullworker.HAND_OVER_IDLE_SECONDS).
keepalive = int(
    os.environ.get("GUNICORN_KEEPALIVE_SECONDS") or (int(os.environ.get("DANMAKU_MAX_NEXT_MS") or 30_000) // 1000 + 2)
)


def _seconds(name: str, default: str) -> float:
    value = float(os.environ.get(name) or default)
    if not 0 < value <= 3600:
        raise ValueError(f"{name} must be a number of seconds above 0, got {value}")
    return value


# Slow clients (danmaku_site.pullworker reads requests on its event loop and
# writes what a client does not take yet from there, so neither holds a
# thread). A request (its head, and a body up to 64 KiB) must be whole this
# long after its first byte, or after the connection was accepted: a
# client sends it in one go, and 5 s still covers two lost packets (TCP
# resends after about 1 s, then 2 s); all it bounds is how long a connection
# slot (worker_connections) stays taken by a client that sends nothing more.
read_timeout_seconds = _seconds("GUNICORN_READ_TIMEOUT_SECONDS", "5")
# A client that takes no byte of its answer for this long is reset: a
# viewer stalled that long (three polls) reconnects anyway, and a reader that
# never reads gives its connection slot back.
write_timeout_seconds = _seconds("GUNICORN_WRITE_TIMEOUT_SECONDS", "10")


def post_worker_init(worker):
    # gunicorn has no settings of its own for these: the pull worker takes
    # them here, before it accepts its first connection.
    set_timeouts = getattr(worker, "set_timeouts", None)
    if set_timeouts is not None:
        set_timeouts(read_seconds=read_timeout_seconds, write_seconds=write_timeout_seconds)


# Recycle workers now and then so a slow leak in Django's views cannot grow
# forever; jitter keeps them from restarting together, and the pull worker
# recycles one at a time, draining. Not on a pull node: its requests leave
# nothing behind (its memory is the ring buffers and shared answers, bounded
# by rooms and the window), and at a crowd's rate a count of requests comes
# round every minute or two, each time moving a quarter of the viewers and
# starting a process with a cold ring.
_role = (os.environ.get("DANMAKU_ROLE") or "all").strip().lower()
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS") or ("0" if _role == "pull" else "1000000"))
max_requests_jitter = max_requests // 10
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# serve() starts each worker's background jobs (see danmaku_site.wsgi).
wsgi_app = "danmaku_site.wsgi:serve()"
# gunicorn's control socket (for `gunicornc`) defaults to one path per user
# ($XDG_RUNTIME_DIR or ~/.gunicorn/gunicorn.ctl): a second instance (tests,
# the bench, another checkout) would take it over and `gunicornc` would drive
# the wrong server. Keep it beside this instance's data; "off" disables it.
_var_dir = os.environ.get("DANMAKU_VAR_DIR") or os.path.join(os.path.dirname(os.path.dirname(__file__)), "var")
_control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET") or os.path.join(os.path.abspath(_var_dir), "gunicorn.ctl")
if _control_socket == "off":
    control_socket_disable = True
else:
    control_socket = _control_socket

# Prometheus multiprocess mode: each worker writes its metrics to files in
# this directory and /metrics adds them up, so a scrape (answered by any one
# worker) sees the whole instance. prometheus-client picks its mode when it
# is first imported; this file runs in the master before any worker exists,
# and the workers import the app (and prometheus-client) only after the fork
# (no preload_app), so setting the variable here is early enough. One
# directory per gunicorn instance: on_starting empties it.
PROMETHEUS_MULTIPROC_DIR = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", os.path.join(os.path.abspath(_var_dir), "prometheus")
)
os.makedirs(PROMETHEUS_MULTIPROC_DIR, exist_ok=True)


def on_starting(server):
    # Values left by a previous run would be added to this one's.
    for path in glob.glob(os.path.join(PROMETHEUS_MULTIPROC_DIR, "*.db")):
        os.remove(path)


def child_exit(server, worker):
    # Drops the dead worker's live gauges (ring rooms and items); its
    # counters stay, so totals never go backwards when a worker is recycled.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, PROMETHEUS_MULTIPROC_DIR)
