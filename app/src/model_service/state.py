"""What a running service knows: the model being served, readiness, draining, in-flight work."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from .artifact import LoadedModel, load_model
from .config import Settings
from .drift import DriftSignals
from .errors import ArtifactError
from .metrics import Metrics

log = logging.getLogger("model_service")

Loader = Callable[[Path], LoadedModel]


class ServiceState:
    """Holds the served model and swaps it atomically: readers take one reference per request."""

    def __init__(self, settings: Settings, metrics: Metrics, loader: Loader | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self._loader = loader or self._default_loader
        self._model: LoadedModel | None = None
        self._load_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._in_flight = 0
        self.draining = False

    def _default_loader(self, path: Path) -> LoadedModel:
        s = self.settings
        return load_model(path, runtime=s.runtime, tree_max_rows=s.tree_max_rows, xgboost_threads=s.xgboost_threads)

    @property
    def model(self) -> LoadedModel | None:
        return self._model

    @property
    def ready(self) -> bool:
        return self._model is not None and not self.draining

    def load(self, path: Path | None = None) -> LoadedModel:
        """Load, check and warm an artifact, then swap it in. On failure the served model stays."""
        target = Path(path or self.settings.model_path or "")
        if not str(target):
            raise ArtifactError("no model path is configured (set model_path or pass --model)")
        with self._load_lock:
            previous = self._model
            try:
                model = self._loader(target)
            except ArtifactError as exc:
                self.metrics.load_failures.inc()
                log.error("model refused", extra={"event": "model_refused", "path": str(target), "reason": str(exc)})
                raise
            model.signals = DriftSignals(self.metrics, model.metadata)
            self._model = model
            if previous is not None and previous.signals is not None and previous.signals.model != model.signals.model:
                previous.signals.retire()
            runtime = model.tree.name if model.tree is not None else model.reference.name
            if model.tree_fallback is not None:
                self.metrics.runtime_fallbacks.inc()
                log.warning(
                    "tree runtime not used",
                    extra={"event": "runtime_fallback", "version": model.version, "reason": model.tree_fallback},
                )
            self.metrics.set_model(model.name, model.version, runtime, model.loaded_at)
            self.metrics.ready.set(0 if self.draining else 1)
            if previous is not None:
                self.metrics.reloads.inc()
            log.info(
                "model loaded",
                extra={
                    "event": "model_loaded",
                    "path": str(model.directory),
                    "version": model.version,
                    "previous_version": previous.version if previous else None,
                    "runtime": runtime,
                },
            )
            return model

    def start_draining(self) -> None:
        self.draining = True
        self.metrics.ready.set(0)

    def request_started(self) -> None:
        with self._count_lock:
            self._in_flight += 1

    def request_finished(self) -> None:
        with self._count_lock:
            self._in_flight -= 1

    @property
    def in_flight(self) -> int:
        return self._in_flight
