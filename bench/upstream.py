#!/usr/bin/python3
"""An app host's stand-in for balancer tests and benchmarks: ``upstream.py PORT`` on 127.0.0.1.

GET answers 200 with the POSTs it has received (``{"status": "ready", "posts": N}``); a POST answers
``{"model_version": "PORT"}``, after ``?sleep=SECONDS``; ``?answer=502`` (or any status) answers that
status, ``?answer=close`` closes the connection without a byte of answer. ``upstream.py PORT draining``
stands in for a process that drains: GET answers 503 (what /ready says while draining), POSTs are still
answered. Standard library only: it runs on the project's bare base image.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 8101
DRAINING = sys.argv[2:3] == ["draining"]
COUNT = {"post": 0}


class Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if DRAINING:
            self.send(503, json.dumps({"error": "draining", "posts": COUNT["post"]}).encode())
            return
        self.send(200, json.dumps({"status": "ready", "posts": COUNT["post"]}).encode())

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        COUNT["post"] += 1
        query = parse_qs(urlsplit(self.path).query)
        time.sleep(float(query.get("sleep", ["0"])[0]))
        answer = query.get("answer", ["200"])[0]
        if answer == "close":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        status = int(answer)
        self.send(status, json.dumps({"model_version": str(PORT), "status": status}).encode())

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", PORT), Upstream).serve_forever()
