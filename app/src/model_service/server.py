"""Running the app under waitress: readiness, SIGHUP hot reload, SIGTERM drain, systemd notify."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from types import FrameType
from typing import Any

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.task import ErrorTask, WSGITask

from .config import Settings
from .contract import BODY_TOO_LARGE
from .errors import ApiError, ArtifactError
from .wsgi import error_body

log = logging.getLogger("model_service")


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify units) about readiness or stopping; a no-op elsewhere."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode())


class JsonErrorTask(ErrorTask):
    """What waitress refuses before the app sees a request (a body over the limit, malformed HTTP),
    answered in the service's JSON error shape instead of waitress' plain text."""

    def execute(self) -> None:
        error = self.request.error
        if error.code == 413:
            answer = BODY_TOO_LARGE.error(limit=self.channel.server.adj.max_request_body_size)
        else:
            answer = ApiError(error.code, error.reason.lower().replace(" ", "_"), str(error.body))
        body = error_body(answer, getattr(self.request, "path", "") or "")
        if error.code == 413:
            self.channel.linger_after_close = True  # type: ignore[attr-defined]
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class DrainingTask(WSGITask):
    """An answer that closes its connection once the process is shutting down.

    A proxy that keeps connections to the process must not be left holding an idle one when the process
    closes them all at the end of its drain: a request it sends on one just then is lost. While draining,
    each answer carries ``Connection: close`` and its connection is closed after it.
    """

    def build_response_header(self) -> bytes:
        if getattr(self.channel.server, "draining", False):
            self.set_close_on_finish()
        return bytes(super().build_response_header())


class JsonErrorChannel(HTTPChannel):
    """A channel that, after refusing a body over the limit, reads and drops what the client still sends.

    Closing a socket with unread data makes the kernel reset the connection, and a client still
    sending its body then sees the reset instead of the 413 that was sent to it. Like nginx's lingering
    close, the channel stops writing, and reads and drops at most ``LINGER_BYTES`` for at most
    ``LINGER_SECONDS`` before it closes; a client that sends more than that gets the reset, and one that
    stops sending but keeps the connection open is closed when ``LINGER_SECONDS`` have passed (checked
    on every turn of the event loop). A lingering channel has no request in flight: the SIGTERM drain
    does not wait for it.
    """

    error_task_class = JsonErrorTask
    task_class = DrainingTask
    LINGER_BYTES = 64 * 1024 * 1024
    LINGER_SECONDS = 10.0
    linger_after_close = False
    _lingering = False
    _linger_left = 0
    _linger_until = 0.0

    def handle_close(self) -> None:
        if self.linger_after_close and not self._lingering and self.connected:
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            else:
                self._lingering = True
                self.will_close = False
                # What followed the refused request's headers may have been parsed as the start of another
                # request: it is dropped, and the channel is not busy with it.
                self.request = None
                self._linger_left = self.LINGER_BYTES
                self._linger_until = time.monotonic() + self.LINGER_SECONDS
                # The server's idle sweep closes the channel if the client stops sending but keeps it open.
                self.last_activity = time.time() - self.adj.channel_timeout + self.LINGER_SECONDS
                return
        super().handle_close()

    @property
    def lingering(self) -> bool:
        return self._lingering

    def readable(self) -> bool:
        if not self._lingering:
            return bool(super().readable())
        if not self.connected:
            return False
        if time.monotonic() > self._linger_until:
            super().handle_close()
            return False
        return True

    def writable(self) -> bool:
        if not self._lingering:
            return bool(super().writable())
        return bool(self.will_close) and bool(self.connected)

    def handle_read(self) -> None:
        if not self._lingering:
            super().handle_read()
            return
        try:
            data = self.socket.recv(self.adj.recv_bytes)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        self._linger_left -= len(data)
        if not data or self._linger_left <= 0 or time.monotonic() > self._linger_until:
            super().handle_close()


class Service:
    """A waitress server around the app, with the process-level behaviour an operator expects."""

    def __init__(self, settings: Settings) -> None:
        if settings.metrics_dir is not None:
            settings.metrics_dir.mkdir(parents=True, exist_ok=True)
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(settings.metrics_dir)
        from waitress.server import create_server

        from .app import create_app
        from .metrics import Metrics, process_exited, sweep_dead_processes
        from .state import ServiceState

        if settings.metrics_dir is not None:
            sweep_dead_processes(str(settings.metrics_dir))

        self.settings = settings
        self.state = ServiceState(settings, Metrics())
        self.state.load()  # raises ArtifactError: the process exits before it listens
        self.app = create_app(settings, self.state)
        try:
            self.server: Any = self._listen(create_server)
        except OSError:
            process_exited(os.getpid())  # the model was loaded: take its live gauges back
            raise
        self.server.channel_class = JsonErrorChannel
        self._stopping = threading.Event()
        self._drainer: threading.Thread | None = None

    def _listen(self, create_server: Any) -> Any:
        settings = self.settings
        return create_server(
            self.app,
            host=settings.host,
            port=settings.port,
            threads=settings.threads,
            connection_limit=settings.connection_limit,
            channel_timeout=settings.channel_timeout,
            # Refused from the Content-Length header (or while chunks arrive), before any buffering.
            max_request_body_size=settings.max_body_bytes,
            ident="model-service",
            recv_bytes=65536,
            expose_tracebacks=False,
        )

    @property
    def port(self) -> int:
        return int(self.server.effective_port)

    def reload(self) -> bool:
        try:
            self.state.load()
        except ArtifactError:
            return False
        except Exception:
            log.exception("reload failed", extra={"event": "model_refused"})
            self.state.metrics.load_failures.inc()
            return False
        return True

    def _on_hup(self, _signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=self.reload, name="reload", daemon=True).start()

    def _on_term(self, signum: int, _frame: FrameType | None) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        log.info("draining", extra={"event": "draining", "signal": signal.Signals(signum).name})
        self._drainer = threading.Thread(target=self._drain_logged, name="drain", daemon=True)
        self._drainer.start()

    def _drain_logged(self) -> None:
        try:
            self.drain()
        except Exception:
            log.exception("drain failed", extra={"event": "drain_failed"})
            os._exit(1)

    def drain(self) -> None:
        """Readiness 503, wait drain_seconds, stop accepting, let in-flight requests finish, stop."""
        sd_notify("STOPPING=1")
        self.server.draining = True  # before /ready says so: whoever sees the 503 finds answers closing
        self.state.start_draining()
        time.sleep(self.settings.drain_seconds)
        self.server.trigger.pull_trigger(self._stop_accepting)
        deadline = time.monotonic() + self.settings.shutdown_timeout
        while (self.state.in_flight > 0 or self._busy_channels()) and time.monotonic() < deadline:
            time.sleep(0.02)
        log.info("stopped", extra={"event": "stopped", "unfinished": self.state.in_flight})
        self.server.trigger.pull_trigger(self._close_all)

    def _busy_channels(self) -> bool:
        # A request still arriving (``request``), waiting or running (``requests``), or an answer
        # still being sent (``total_outbufs_len``) is in flight; an idle keep-alive connection is not, nor
        # is a connection lingering after a 413 (its answer was sent, only the client's rest is dropped).
        return any(
            not getattr(ch, "lingering", False)
            and (
                getattr(ch, "request", None) is not None
                or getattr(ch, "requests", None)
                or getattr(ch, "total_outbufs_len", 0)
            )
            for ch in list(self.server._map.values())
        )

    def _stop_accepting(self) -> None:
        # Close the listening socket only: waitress' own server.close() also closes the trigger,
        # which is still needed to stop the loop once in-flight requests are done.
        wasyncore.dispatcher.close(self.server)

    def _close_all(self) -> None:
        for channel in list(self.server._map.values()):
            channel.close()

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        signal.signal(signal.SIGHUP, self._on_hup)
        model = self.state.model
        log.info(
            "serving",
            extra={
                "event": "serving",
                "host": self.settings.host,
                "port": self.port,
                "threads": self.settings.threads,
                "model_version": model.version if model else None,
            },
        )
        sd_notify("READY=1")
        try:
            self.server.run()
        finally:
            if self._drainer is not None:
                self._drainer.join(timeout=5)
            self.server.task_dispatcher.shutdown(timeout=self.settings.shutdown_timeout)
            from .metrics import process_exited

            process_exited(os.getpid())
