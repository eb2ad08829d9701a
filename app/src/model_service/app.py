"""The Flask application factory: routes, the one error shape, metrics and the access log."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

import orjson
from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from .config import Settings
from .errors import ApiError, payload_too_large
from .metrics import Metrics
from .openapi import build_openapi
from .state import ServiceState
from .validation import check_content_type, parse_instances, parse_json

access_log = logging.getLogger("model_service.access")
log = logging.getLogger("model_service")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_HTTP_CODES = {
    400: ("bad_request", "the request is malformed"),
    404: ("not_found", "no such route; see /openapi.json"),
    405: ("method_not_allowed", "this method is not allowed on this route; see /openapi.json"),
}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json", headers=headers)


def create_app(settings: Settings, state: ServiceState | None = None) -> Flask:
    """Build the WSGI app. Without a state, one is made and the configured model is loaded."""
    if state is None:
        state = ServiceState(settings, Metrics())
        if settings.model_path is not None:
            state.load()
    metrics = state.metrics
    app = Flask("model_service")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["model_service"] = state

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        g.rows = 0
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        state.request_started()
        metrics.in_flight.inc()

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        g.status = response.status_code
        return response

    @app.teardown_request
    def _account(_error: BaseException | None) -> None:
        if "started" not in g:
            return
        elapsed = time.perf_counter() - g.started
        state.request_finished()
        metrics.in_flight.dec()
        rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
        status = g.get("status", 500)
        metrics.requests.labels(route=rule, method=request.method, status=str(status)).inc()
        metrics.latency.labels(route=rule).observe(elapsed)
        if g.rows:
            metrics.rows.inc(g.rows)
        if settings.access_log:
            access_log.info(
                "request",
                extra={
                    "event": "access",
                    "request_id": g.request_id,
                    "method": request.method,
                    "path": request.path,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "rows": g.rows,
                    "remote": request.headers.get("X-Real-IP") or request.remote_addr,
                },
            )

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        return json_response(error.body(), error.status)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        if status == 413:
            return json_response(payload_too_large(settings.max_body_bytes).body(), 413)
        else:
            code, detail = _HTTP_CODES.get(status, ("http_error", error.description or error.name))
        return json_response({"error": code, "detail": detail}, status)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error", extra={"event": "error", "request_id": g.get("request_id")})
        return json_response(
            {"error": "internal_error", "detail": f"unexpected {type(error).__name__}; see the service log"}, 500
        )

    @app.post("/predict")
    def predict() -> Response:
        model = state.model
        if model is None:
            raise ApiError(503, "not_ready", "no model is loaded yet")
        check_content_type(request.content_type)
        payload = parse_json(request.get_data(cache=False))
        rows, batch = parse_instances(payload, model.features, settings.max_batch_rows)
        probabilities = model.predict_proba(rows).tolist()
        g.rows = len(probabilities)
        keys, labels = model.label_keys, model.labels
        predictions = []
        for row in probabilities:
            best = max(range(len(row)), key=row.__getitem__)
            predictions.append(
                {
                    "predicted_class": labels[best],
                    "probabilities": dict(zip(keys, row, strict=True)),
                    "confidence": row[best],
                    "model_version": model.version,
                }
            )
        if batch:
            return json_response({"predictions": predictions, "model_version": model.version})
        return json_response(predictions[0])

    @app.get("/health")
    def health() -> Response:
        return json_response({"status": "ok"})

    @app.get("/ready")
    def ready() -> Response:
        model = state.model
        if model is None:
            raise ApiError(503, "not_ready", "no model is loaded yet")
        if state.draining:
            raise ApiError(503, "draining", "the service is shutting down")
        return json_response({"status": "ready", "model": model.name, "model_version": model.version})

    @app.get("/model")
    def model_info() -> Response:
        model = state.model
        if model is None:
            raise ApiError(503, "not_ready", "no model is loaded yet")
        runtime = {
            "small_batches": model.runtime_for(1).name,
            "large_batches": model.reference.name,
            "tree_runtime_refused": model.tree_fallback,
        }
        return json_response({**model.metadata, "runtime": runtime})

    @app.get("/metrics")
    def metrics_route() -> Response:
        body, content_type = metrics.render()
        return Response(body, mimetype=None, content_type=content_type)

    @app.get("/openapi.json")
    def openapi() -> Response:
        model = state.model
        features = model.features if model is not None else ()
        return json_response(build_openapi(features, settings.max_batch_rows, settings.max_body_bytes))

    return app
