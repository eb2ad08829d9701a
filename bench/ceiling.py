"""The HTTP ceiling for the benchmark: a bare waitress app that answers a fixed JSON reply."""

from __future__ import annotations

import sys

from waitress import serve

BODY = b'{"predicted_class":1,"probabilities":{"1":1.0},"confidence":1.0,"model_version":"ceiling"}'


def app(environ: dict, start_response) -> list[bytes]:  # noqa: ANN001
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))])
    return [BODY]


if __name__ == "__main__":
    serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=4, ident="ceiling", _quiet=True)
