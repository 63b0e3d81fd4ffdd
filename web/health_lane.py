"""gunicorn's gthread worker with a lane of its own for /healthz, so a health check never waits behind a search.

A gthread worker hands every request to one pool of `--threads` threads, first come first served. The search
budget keeps one of them free of provider waits (refarch.serving.SEMANTIC_SEARCH_SLOTS), but under a flood that
thread is busy answering lexically, and a health check queued behind those answers took up to ~230 ms on two
busy cores: enough lost checks in a row and the load balancer pulls a healthy task (issue 24).

This worker looks at a request before it picks a pool: a connection whose first bytes are `GET /healthz` goes
to a pool of its own (HEALTH_THREADS per process), everything else to the usual one. It peeks (MSG_PEEK)
without reading, so the request is parsed and served by gunicorn and the Flask app exactly as any other. A
new connection waits on the worker's poller until its first bytes arrive (instead of in a pool thread, as
gthread does), so the peek sees the request line of a load balancer's health check too, which opens a new
connection for each check. The health check itself (web.api.healthz) still asks the database, on its own
thread's kept connection.

It serves plain HTTP/1.1, as the ALB speaks to its targets (TLS ends at CloudFront and the ALB): with gunicorn's
own TLS or HTTP/2 it refuses to start. The ALB answers a viewer's /healthz itself (a 404, cdk_app/frontend_stack.py),
so the lane is the load balancer's alone; its checks go to the targets directly, past the listener's rules.

It changes gthread only where it picks a pool and where a new connection waits, reading gthread's own state
(pending connections, the parser's buffer): it is written against gunicorn 27.0 and refuses another version
until checked against it; tests/web/test_search_budget.py runs it under gunicorn with every request thread held.
"""

from __future__ import annotations

import errno
import selectors
import socket
import time
from concurrent import futures
from functools import partial
from typing import Any

import gunicorn
from gunicorn.workers.gthread import DEFAULT_WORKER_DATA_TIMEOUT, TConn, ThreadWorker

if gunicorn.version_info[:2] != (27, 0):
    raise ImportError(f"web.health_lane is written against gunicorn 27.0's gthread worker, not {gunicorn.__version__}")

# Health checks a process answers at once: a check takes a few ms and the load balancer sends one per target
# every few seconds, so one thread would do; the second keeps a check that waits on a sick database from
# holding up the next one.
HEALTH_THREADS = 2
HEALTH_REQUEST_PREFIXES = (b"GET /healthz ", b"GET /healthz?", b"HEAD /healthz ", b"HEAD /healthz?")
_PEEK_BYTES = max(len(prefix) for prefix in HEALTH_REQUEST_PREFIXES)


def asks_for_health(sock: socket.socket) -> bool:
    """Whether the bytes waiting on a (non-blocking) socket start a /healthz request; reads nothing."""
    try:
        head = sock.recv(_PEEK_BYTES, socket.MSG_PEEK)
    except (OSError, ValueError):  # nothing there yet (BlockingIOError), the peer gone: the usual pool decides
        return False
    return head.startswith(HEALTH_REQUEST_PREFIXES)


class HealthLaneWorker(ThreadWorker):  # type: ignore[misc]  # gunicorn ships no type information
    """gthread with a separate thread pool for /healthz (see the module docstring)."""

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        """gthread's checks; then refuse TLS and HTTP/2, where the request line cannot be peeked at."""
        super().check_config(cfg, log)
        if cfg.is_ssl or cfg.http_protocols != ["h1"] or cfg.http2_cleartext != "off":
            raise RuntimeError("web.health_lane serves plain HTTP/1.1 only (no --certfile, --http-protocols h1)")

    def init_process(self) -> None:
        """Start the health pool next to gthread's request pool."""
        self.health_pool = futures.ThreadPoolExecutor(max_workers=HEALTH_THREADS, thread_name_prefix="healthz")
        super().init_process()

    def accept(self, listener: socket.socket) -> None:
        """Accept a connection and let it wait on the poller for its first bytes, where its request line
        can be peeked at (gthread itself hands it to a pool thread at once, which waits for them)."""
        try:
            sock, address = listener.accept()
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, sock, address, listener.getsockname())  # sets the socket non-blocking
        # As long as gthread gives a new connection for its first bytes (a pool thread waits for them, then it
        # waits on the poller for the keep-alive timeout).
        conn.timeout = time.monotonic() + DEFAULT_WORKER_DATA_TIMEOUT + self.cfg.keepalive
        self.pending_conns.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn))

    def enqueue_req(self, conn: Any) -> None:
        """Submit a connection with a request waiting to the health pool or the request pool."""
        buffered = conn.parser is not None and conn.parser.unreader.buf.getvalue()
        health = not buffered and asks_for_health(conn.sock)
        pool = self.health_pool if health else self.tpool
        done = pool.submit(self.handle, conn)
        done.add_done_callback(lambda fut: self.method_queue.defer(self.finish_request, conn, fut))

    def _cap_keepalive(self, deadline: float) -> None:
        """A stopping worker closes its kept-alive connections by `deadline`, and new ones that never sent a byte
        too (gthread's own new connections wait in a pool thread for at most DEFAULT_WORKER_DATA_TIMEOUT)."""
        super()._cap_keepalive(deadline)
        for conn in self.pending_conns:
            conn.timeout = min(conn.timeout, deadline)

    def run(self) -> None:
        """gthread's loop; then stop the health pool as gthread stops its request pool."""
        try:
            super().run()
        finally:
            self.health_pool.shutdown(wait=False)

    def handle_quit(self, sig: int, frame: Any) -> None:
        """SIGQUIT: stop the health pool too."""
        self.health_pool.shutdown(wait=False)
        super().handle_quit(sig, frame)
