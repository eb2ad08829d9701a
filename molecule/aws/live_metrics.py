"""A real Prometheus on loopback that discovers the emulator's app instances by their tags (EC2 service
discovery against moto, as the monitoring host does against AWS) and scrapes, for each one, the metrics a
model service on it would export. The instances in moto run nothing, so a small exporter answers for
them: the load balancer's listener splits the requests between releases by its weights, and the test
decides which releases fail half of theirs. The canary gate then judges a release from what Prometheus
computed, not from a canned answer.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


@dataclass
class Behaviour:
    """What the fleet does: ``rate`` requests a second through the load balancer, split between releases as
    ``shares()`` says (the listener's weights) and evenly between a release's instances; the instances of
    ``failing`` releases answer half their requests with 500. Counters grow by what each share earned
    since the instance's last scrape, so a weight change shows in the rates as it would on AWS."""

    rate: float = 40.0
    failing: set[str] = field(default_factory=set)
    shares: Callable[[], dict[str, float]] = dict
    _served: dict[str, float] = field(default_factory=dict)
    _failed: dict[str, float] = field(default_factory=dict)
    _scraped: dict[str, tuple[str, float]] = field(default_factory=dict)
    _cache: tuple[float, dict[str, float]] = (0.0, {})
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _share(self, release: str, now: float) -> float:
        if now - self._cache[0] > 1:
            self._cache = (now, self.shares())
        return self._cache[1].get(release, 0.0)

    def exposition(self, release: str, instance: str) -> str:
        now = time.monotonic()
        with self._lock:
            peers = [i for i, (r, at) in self._scraped.items() if r == release and now - at < 5 and i != instance]
            _, last = self._scraped.get(instance, (release, now))
            self._scraped[instance] = (release, now)
            earned = self.rate * self._share(release, now) / (len(peers) + 1) * (now - last)
            self._served[instance] = self._served.get(instance, 0.0) + earned
            if release in self.failing:
                self._failed[instance] = self._failed.get(instance, 0.0) + earned / 2
            total, failed = self._served[instance], self._failed.get(instance, 0.0)
        labels = 'route="/predict",model="demo-classifier"'  # job, instance and release: from discovery
        lines = [
            "# TYPE model_service_requests_total counter",
            f'model_service_requests_total{{{labels},status="200"}} {total - failed:.3f}',
            f'model_service_requests_total{{{labels},status="500"}} {failed:.3f}',
            "# TYPE model_service_request_duration_seconds histogram",
        ]
        # Every release answers with the same latency distribution: the buckets hold exact shares of the
        # count (not rounded down to whole requests, which would move a p99 read from a few requests).
        for le, share in (("0.005", 0.5), ("0.01", 0.99), ("0.025", 1.0), ("+Inf", 1.0)):
            lines.append(f'model_service_request_duration_seconds_bucket{{{labels},le="{le}"}} {total * share:.3f}')
        lines += [
            f"model_service_request_duration_seconds_count{{{labels}}} {total:.3f}",
            f"model_service_request_duration_seconds_sum{{{labels}}} {total * 0.005:.3f}",
            "# TYPE model_service_ready gauge",
            "model_service_ready 1",
        ]
        return "\n".join(lines) + "\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(behaviour: Behaviour) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            body = behaviour.exposition(query.get("release", [""])[0], query.get("instance", [""])[0]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", _free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: model_service
    ec2_sd_configs:
      - endpoint: {endpoint}
        region: {region}
        access_key: testing
        secret_key: testing
        refresh_interval: 2s
        port: 80
        filters:
          - name: tag:Project
            values: [modelfleet]
          - name: instance-state-name
            values: [running]
    relabel_configs:
      - source_labels: [__meta_ec2_tag_Role]
        regex: app
        action: keep
      - source_labels: [__meta_ec2_instance_id]
        target_label: instance
      - source_labels: [__meta_ec2_tag_Release]
        target_label: release
      - source_labels: [__meta_ec2_tag_Release]
        target_label: __param_release
      - source_labels: [__meta_ec2_instance_id]
        target_label: __param_instance
      - target_label: __address__
        replacement: 127.0.0.1:{exporter_port}
"""


@contextmanager
def live_metrics(
    prometheus: Path, endpoint: str, region: str, work: Path, shares: Callable[[], dict[str, float]]
) -> Iterator[tuple[str, Behaviour]]:
    """Prometheus' URL and the behaviour the test steers, for as long as the context lasts."""
    behaviour = Behaviour(shares=shares)
    exporter = _serve(behaviour)
    port = _free_port()
    work.mkdir(parents=True, exist_ok=True)
    config = work / "prometheus.yml"
    config.write_text(CONFIG.format(endpoint=endpoint, region=region, exporter_port=exporter.server_address[1]))
    log = (work / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            str(prometheus),
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=log,
    )
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", behaviour
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()
        exporter.shutdown()
