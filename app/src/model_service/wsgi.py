"""The service's WSGI entry: prediction routes without Flask, and one accounting step for every request.

``/predict`` and the v2 ``infer`` routes are answered here directly: they are the requests a fleet
serves thousands of per second, and Flask's request context, hooks and routing cost more than the
prediction of one row. Every other route is Flask's (``app.py``). For every request, whichever answers
it, this layer sets the request id, counts it in the metrics (label sets cached) and writes the access
log line.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import orjson

from . import contract as c
from . import v2
from .errors import ApiError, internal_error, not_ready
from .logs import AccessLog
from .validation import RowReader, check_content_type

if TYPE_CHECKING:
    from .artifact import LoadedModel
    from .config import Settings
    from .state import ServiceState

log = logging.getLogger("model_service")

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
REQUEST_ID = "model_service.request_id"
PREDICT_ROUTE = "/predict"
INFER_ROUTES = ("/v2/models/<name>/infer", "/v2/models/<name>/versions/<version>/infer")
_STATUS = {200: "200 OK", 400: "400 Bad Request", 404: "404 Not Found", 413: "413 Payload Too Large"}
_STATUS |= {415: "415 Unsupported Media Type", 422: "422 Unprocessable Content", 500: "500 Internal Server Error"}
_STATUS |= {503: "503 Service Unavailable"}
# The methods counted by name; any other is counted as OTHER, so that a client sending random methods
# cannot grow the number of series (every label value is a series in Prometheus).
COUNTED_METHODS = frozenset({"GET", "HEAD", "POST", "OPTIONS"})


def is_v2(path: str) -> bool:
    return path == "/v2" or path.startswith("/v2/")


def error_body(error: ApiError, path: str) -> bytes:
    """The protocol's ``{"error": message}`` on v2 paths, the service's ``{"error", "detail"}`` elsewhere."""
    return orjson.dumps({"error": error.detail} if is_v2(path) else error.body())


class ServiceApp:
    """WSGI callable in front of the Flask app (installed as its ``wsgi_app``)."""

    def __init__(self, flask_wsgi: WsgiApp, settings: Settings, state: ServiceState) -> None:
        self._flask = flask_wsgi
        self._settings = settings
        self._state = state
        self._metrics = state.metrics
        self._serving: tuple[LoadedModel, RowReader] | None = None
        self._access_log = AccessLog() if settings.access_log else None
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._latencies: dict[str, Any] = {}
        self._cpu: dict[str, Any] = {}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        cpu_started = time.thread_time()  # this thread's CPU time: the request's own, whatever else runs
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        environ[REQUEST_ID] = request_id
        self._state.request_started()
        self._metrics.in_flight.inc()
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        answered: list[int] = []

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers.append(("X-Request-ID", request_id))
            answered.append(int(status[:3]))
            return start_response(status, headers, exc_info)

        try:
            if method == "POST" and (path == PREDICT_ROUTE or path.startswith("/v2/models/")):
                infer = _INFER.match(path) if path != PREDICT_ROUTE else None
                if path == PREDICT_ROUTE or infer is not None:
                    return self._answer(environ, start, path, infer)
            return self._flask(environ, start)
        finally:
            self._account(environ, method, path, answered[-1] if answered else 500, started, request_id)
            self._charge_cpu(environ, time.thread_time() - cpu_started)

    def _answer(
        self, environ: dict[str, Any], start: StartResponse, path: str, infer: re.Match[str] | None
    ) -> list[bytes]:
        environ["model_service.route"] = PREDICT_ROUTE if infer is None else INFER_ROUTES[infer.group(2) is not None]
        headers = [("Content-Type", "application/json")]
        try:
            body = self._predict(environ) if infer is None else self._infer(environ, infer, headers)
            status = 200
        except ApiError as error:
            status, body = error.status, error_body(error, path)
            headers = [("Content-Type", "application/json")]
            model = self._state.model
            if error.missing and model is not None and model.signals is not None:
                model.signals.refused_missing(error.missing)
        except Exception as error:  # any failure is answered, logged and counted as a 500
            log.exception("unhandled error", extra={"event": "error", "request_id": environ[REQUEST_ID]})
            status, body = 500, error_body(internal_error(error), path)
            headers = [("Content-Type", "application/json")]
        headers.append(("Content-Length", str(len(body))))
        start(_STATUS.get(status, f"{status} Error"), headers)
        return [body]

    def _body(self, environ: dict[str, Any]) -> bytes:
        limit = self._settings.max_body_bytes
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            length = -1
        if length > limit:
            raise c.BODY_TOO_LARGE.error(limit=limit)
        body = environ["wsgi.input"].read(length if length >= 0 else limit + 1)
        if len(body) > limit:
            raise c.BODY_TOO_LARGE.error(limit=limit)
        return body

    def _model(self) -> LoadedModel:
        model = self._state.model
        if model is None:
            raise not_ready()
        return model

    def _serve(self) -> tuple[LoadedModel, RowReader]:
        """The served model and its row reader (built once per model)."""
        model = self._model()
        serving = self._serving
        if serving is None or serving[0] is not model:
            serving = self._serving = (model, RowReader(model.features))
        return serving

    def _predict(self, environ: dict[str, Any]) -> bytes:
        model, reader = self._serve()
        check_content_type(environ.get("CONTENT_TYPE"))
        rows, batch = reader.read(self._body(environ), self._settings.max_batch_rows)
        probabilities = model.predict_proba(rows)
        if model.signals is not None:
            model.signals.observe(rows, probabilities)
        environ["model_service.rows"] = len(rows)
        best = probabilities.argmax(axis=1).tolist()
        keys, labels, version = model.label_keys, model.labels, model.version
        # zip without strict: the lengths are equal by construction, and the check costs a fifth here.
        predictions = [
            {
                "predicted_class": labels[top],
                "probabilities": dict(zip(keys, row)),  # noqa: B905
                "confidence": row[top],
                "model_version": version,
            }
            for top, row in zip(best, probabilities.tolist())  # noqa: B905
        ]
        if batch:
            return orjson.dumps({"predictions": predictions, "model_version": version})
        return orjson.dumps(predictions[0])

    def _infer(self, environ: dict[str, Any], route: re.Match[str], headers: list[tuple[str, str]]) -> bytes:
        model, _ = self._serve()
        v2.check_model(model, route.group(1), route.group(2))
        encoding = environ.get("HTTP_CONTENT_ENCODING", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise c.V2_CONTENT_ENCODING.error(encoding=encoding)
        header_length = environ.get("HTTP_INFERENCE_HEADER_CONTENT_LENGTH")
        request = v2.parse_infer(self._body(environ), header_length, len(model.features), self._settings.max_batch_rows)
        probabilities = model.predict_proba(request.rows)
        if model.signals is not None:
            model.signals.observe(request.rows, probabilities)
        environ["model_service.rows"] = len(request.rows)
        body, json_length = v2.infer_response(model, request, probabilities)
        if json_length is not None:
            headers[0] = ("Content-Type", "application/octet-stream")
            headers.append((c.V2_BINARY_HEADER, str(json_length)))
        return body

    def _charge_cpu(self, environ: dict[str, Any], seconds: float) -> None:
        route = environ.get("model_service.route", "unmatched")
        cpu = self._cpu.get(route)
        if cpu is None:
            cpu = self._cpu[route] = self._metrics.cpu.labels(route=route)
        cpu.inc(max(seconds, 0.0))

    def _account(
        self, environ: dict[str, Any], method: str, path: str, status: int, started: float, request_id: str
    ) -> None:
        elapsed = time.perf_counter() - started
        self._state.request_finished()
        metrics = self._metrics
        metrics.in_flight.dec()
        route = environ.get("model_service.route", "unmatched")
        key = (route, method if method in COUNTED_METHODS else "OTHER", status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = metrics.requests.labels(route=key[0], method=key[1], status=str(status))
        counter.inc()
        latency = self._latencies.get(route)
        if latency is None:
            latency = self._latencies[route] = metrics.latency.labels(route=route)
        latency.observe(elapsed)
        rows = environ.get("model_service.rows", 0)
        if rows:
            metrics.rows.inc(rows)
        if self._access_log is not None:
            self._access_log.write(
                {
                    "event": "access",
                    "request_id": request_id,
                    "method": method,
                    "path": path,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "rows": rows,
                    "remote": environ.get("HTTP_X_REAL_IP") or environ.get("REMOTE_ADDR"),
                }
            )
