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

It changes gthread only where it picks a pool and where a new connection waits; the version is pinned in the
lock, and tests/web/test_search_budget.py runs it under gunicorn with every search thread held.
"""

from __future__ import annotations

import errno
import selectors
import socket
import time
from concurrent import futures
from functools import partial
from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker

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
    except OSError:  # nothing there yet (BlockingIOError) or the peer is gone: the usual pool decides
        return False
    return head.startswith(HEALTH_REQUEST_PREFIXES)


class HealthLaneWorker(ThreadWorker):  # type: ignore[misc]  # gunicorn ships no type information
    """gthread with a separate thread pool for /healthz (see the module docstring)."""

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
        conn.timeout = time.monotonic() + self.cfg.keepalive
        self.pending_conns.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn))

    def enqueue_req(self, conn: Any) -> None:
        """Submit a connection with a request waiting to the health pool or the request pool."""
        buffered = conn.parser is not None and conn.parser.unreader.buf.getvalue()
        health = not buffered and asks_for_health(conn.sock)
        pool = self.health_pool if health else self.tpool
        done = pool.submit(self.handle, conn)
        done.add_done_callback(lambda fut: self.method_queue.defer(self.finish_request, conn, fut))

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
