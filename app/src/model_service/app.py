"""The Flask application factory: every route but the prediction ones (wsgi.py), and the error shapes."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from . import v2
from .artifact import LoadedModel
from .config import Settings
from .contract import BODY_TOO_LARGE
from .drift import signals_of
from .errors import ApiError, internal_error, not_ready
from .metrics import Metrics
from .openapi import build_openapi
from .state import ServiceState
from .wsgi import INFER_ROUTES, PREDICT_ROUTE, REQUEST_ID, ServiceApp, error_body

log = logging.getLogger("model_service")

# The parts of metadata.json that /model shows to every client (not the training profile).
PUBLIC_METADATA = ("name", "version", "features", "classes", "objective", "format_version", "created_at", "files")

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
    app.wsgi_app = ServiceApp(app.wsgi_app, settings, state)  # type: ignore[method-assign]
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["model_service"] = state

    @app.before_request
    def _route() -> None:
        if request.url_rule is not None:
            request.environ["model_service.route"] = request.url_rule.rule

    def error_response(error: ApiError) -> Response:
        return Response(error_body(error, request.path), status=error.status, mimetype="application/json")

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        return error_response(error)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        if status == 413:
            return error_response(BODY_TOO_LARGE.error(limit=settings.max_body_bytes))
        code, detail = _HTTP_CODES.get(status, ("http_error", error.description or error.name))
        return error_response(ApiError(status, code, detail))

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error", extra={"event": "error", "request_id": request.environ.get(REQUEST_ID)})
        return error_response(internal_error(error))

    def answered_by_service_app() -> Response:
        raise RuntimeError("ServiceApp answers POST on the prediction routes before Flask sees them")

    # The prediction routes are in Flask's table too, so that other methods get a 405 and the route table
    # (which the OpenAPI test compares with the document) is complete; ServiceApp answers their POSTs.
    for rule in (PREDICT_ROUTE, *INFER_ROUTES):
        app.add_url_rule(rule, f"service_app{rule}", answered_by_service_app, methods=["POST"])

    def served_model() -> LoadedModel:
        model = state.model
        if model is None:
            raise not_ready()
        return model

    @app.get("/health")
    def health() -> Response:
        return json_response({"status": "ok"})

    @app.get("/ready")
    def ready() -> Response:
        model = served_model()
        if state.draining:
            raise ApiError(503, "draining", "the service is shutting down")
        return json_response({"status": "ready", "model": model.name, "model_version": model.version})

    def runtime_of(model: LoadedModel) -> dict[str, Any]:
        return {
            "small_batches": model.runtime_for(1).name,
            "large_batches": model.reference.name,
            "tree_runtime_refused": model.tree_fallback,
        }

    @app.get("/model")
    def model_info() -> Response:
        # What a client needs to call the model; the training profile says something about the training
        # data, so it is at /model/profile, which nginx serves on the allow-listed metrics listener only.
        model = served_model()
        public = {key: model.metadata[key] for key in PUBLIC_METADATA if key in model.metadata}
        return json_response({**public, "runtime": runtime_of(model)})

    @app.get("/model/profile")
    def model_profile() -> Response:
        model = served_model()
        signals = signals_of(model.metadata)
        return json_response({**model.metadata, "runtime": runtime_of(model), "drift_signals": signals})

    @app.get("/metrics")
    def metrics_route() -> Response:
        body, content_type = metrics.render()
        return Response(body, mimetype=None, content_type=content_type)

    @app.get("/openapi.json")
    def openapi() -> Response:
        model = state.model
        if model is None:
            return json_response(build_openapi((), settings.max_batch_rows, settings.max_body_bytes))
        return json_response(
            build_openapi(model.features, settings.max_batch_rows, settings.max_body_bytes, model.name, model.version)
        )

    @app.get("/v2")
    def v2_server() -> Response:
        return json_response(v2.server_metadata())

    @app.get("/v2/health/live")
    def v2_live() -> Response:
        return json_response({"live": True})

    @app.get("/v2/health/ready")
    def v2_ready() -> Response:
        served_model()
        if state.draining:
            raise ApiError(503, "draining", "the service is shutting down")
        return json_response({"ready": True})

    @app.get("/v2/models/<name>")
    @app.get("/v2/models/<name>/versions/<version>")
    def v2_model(name: str, version: str | None = None) -> Response:
        model = served_model()
        v2.check_model(model, name, version)
        return json_response(v2.model_metadata(model))

    @app.get("/v2/models/<name>/ready")
    @app.get("/v2/models/<name>/versions/<version>/ready")
    def v2_model_ready(name: str, version: str | None = None) -> Response:
        model = served_model()
        v2.check_model(model, name, version)
        return json_response({"name": model.name, "ready": state.ready})

    return app
