"""modelfleet model service: serves an XGBoost model artifact over HTTP."""

__version__ = "1.0.0"
