"""Prediction load against the local fleet, counted request by request: what a release looks like to clients.

    python bench/load.py [--url http://127.0.0.1:8080] [--rate 100 | --concurrency 8]
                         [--clients both|new|keep-alive] [--keepalive-connections 4]
                         [--seconds 30] [--requests 5000] [--csv load.csv] [--png load.png]

Open loop at ``--rate`` requests per second (or closed loop with ``--concurrency`` connections when
``--rate 0``), bounded by ``--seconds`` and ``--requests``, whichever comes first; it stops by itself.
Only loopback targets are accepted. Every request is a single-row POST /predict, sent by one of two
kinds of client: one that opens a new connection per request, and one that keeps a few connections
alive and sends request after request on them, the way every HTTP library does (like urllib3, it opens
a new connection when the server has closed an idle one before the request is sent; a connection
closed under a request already sent is a failed request). ``--clients both`` (the default) splits the
rate evenly between them. It reports the total, the failures by cause (HTTP status, connection error,
timeout) and kind of client, p50/p99 latency, and which model version answered, per second; ``--csv``
writes that series and ``--png`` draws it.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import ipaddress
import json
import select
import socket
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "build" / "models" / "demo-classifier"
NEW = "new connection"
KEEP_ALIVE = "keep-alive"
CLIENTS = {"both": (NEW, KEEP_ALIVE), "new": (NEW,), "keep-alive": (KEEP_ALIVE,)}


@dataclass
class Sample:
    started: float  # seconds since the run began
    latency: float
    outcome: str  # "ok", "http 502", "connection error", "timeout", ...
    version: str
    client: str = NEW  # NEW or KEEP_ALIVE


@dataclass
class LoadResult:
    samples: list[Sample] = field(default_factory=list)
    seconds: float = 0.0
    began_at: float = 0.0  # wall-clock time (epoch seconds) of the start: samples' ``started`` count from it

    @property
    def total(self) -> int:
        return len(self.samples)

    @property
    def failures(self) -> dict[str, int]:
        return dict(Counter(s.outcome for s in self.samples if s.outcome != "ok"))

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def by_client(self) -> dict[str, tuple[int, int]]:
        """Requests and failed requests per kind of client."""
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for sample in self.samples:
            counts[sample.client][0] += 1
            counts[sample.client][1] += sample.outcome != "ok"
        return {client: (total, failed) for client, (total, failed) in sorted(counts.items())}

    @property
    def versions(self) -> dict[str, int]:
        return dict(Counter(s.version for s in self.samples if s.outcome == "ok"))

    def percentile(self, q: float) -> float:
        latencies = sorted(s.latency for s in self.samples if s.outcome == "ok")
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    def per_second(self) -> list[dict[str, object]]:
        """One row a second: requests by version, failures, p50 and p99 (ms) of the successful ones."""
        buckets: dict[int, list[Sample]] = defaultdict(list)
        for sample in self.samples:
            buckets[int(sample.started)].append(sample)
        versions = sorted(self.versions)
        rows = []
        for second in range(int(self.seconds) + 1):
            group = buckets.get(second, [])
            ok = sorted(s.latency for s in group if s.outcome == "ok")
            row: dict[str, object] = {"second": second}
            for version in versions:
                row[f"ok {version}"] = sum(1 for s in group if s.outcome == "ok" and s.version == version)
            row["failed"] = sum(1 for s in group if s.outcome != "ok")
            row["p50_ms"] = round(statistics.median(ok) * 1000, 2) if ok else ""
            row["p99_ms"] = round(ok[min(len(ok) - 1, int(0.99 * len(ok)))] * 1000, 2) if ok else ""
            rows.append(row)
        return rows

    def summary(self) -> str:
        failures = ", ".join(f"{k}: {v}" for k, v in sorted(self.failures.items())) or "none"
        versions = ", ".join(f"{k}: {v}" for k, v in sorted(self.versions.items())) or "none"
        clients = "; ".join(f"{k} {t} / {f} failed" for k, (t, f) in self.by_client().items())
        return (
            f"{self.total} requests in {self.seconds:.1f} s ({self.total / max(self.seconds, 1e-9):.0f}/s), "
            f"{self.failed} failed ({failures}) [{clients}]; p50 {self.percentile(0.5) * 1000:.1f} ms, "
            f"p99 {self.percentile(0.99) * 1000:.1f} ms; answered by model version: {versions}"
        )


def check_loopback(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        loopback = ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        loopback = False
    if parts.scheme != "http" or not loopback:
        raise ValueError(f"{url}: only http:// targets on this machine's loopback are accepted")
    return host, parts.port or 80, parts.path.rstrip("/")


def instance_from(model: Path) -> dict[str, float]:
    """A valid row for the model: the middle of each feature's training range."""
    metadata = json.loads((model / "metadata.json").read_text(encoding="utf-8"))
    ranges = metadata.get("training", {}).get("feature_ranges", {})
    return {
        f: round((ranges[f]["min"] + ranges[f]["max"]) / 2, 4) if f in ranges else 0.0 for f in metadata["features"]
    }


def _answer(response: http.client.HTTPResponse) -> tuple[str, str]:
    payload = response.read()
    if response.status != 200:
        return f"http {response.status}", ""
    return "ok", str(json.loads(payload).get("model_version", ""))


def _one(host: str, port: int, path: str, body: bytes, timeout: float) -> tuple[str, str]:
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("POST", path, body, {"Content-Type": "application/json", "Connection": "close"})
        return _answer(connection.getresponse())
    except TimeoutError:
        return "timeout", ""
    except (OSError, http.client.HTTPException):
        return "connection error", ""
    finally:
        connection.close()


class KeptAlive:
    """One connection kept alive across requests, reopened only when the server closed it while idle."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.connection: http.client.HTTPConnection | None = None

    def _dropped(self) -> bool:
        # What urllib3 does before reusing a pooled connection: readable while idle means closed (or junk).
        sock = self.connection.sock if self.connection else None
        if sock is None:
            return True
        return bool(select.select([sock], [], [], 0)[0])

    def post(self, path: str, body: bytes) -> tuple[str, str]:
        if self.connection is None or self._dropped():
            if self.connection:
                self.connection.close()
            self.connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self.connection.request("POST", path, body, {"Content-Type": "application/json"})
            response = self.connection.getresponse()
            outcome = _answer(response)
            if response.will_close:
                self.close()
            return outcome
        except TimeoutError:
            self.close()
            return "timeout", ""
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.close()
            return "connection closed under a request", ""
        except (OSError, http.client.HTTPException):
            self.close()
            return "connection error", ""

    def close(self) -> None:
        if self.connection:
            self.connection.close()
        self.connection = None


def run_load(
    url: str,
    instance: dict[str, float],
    rate: float = 100.0,
    concurrency: int = 8,
    seconds: float = 30.0,
    max_requests: int = 100_000,
    timeout: float = 10.0,
    stop: threading.Event | None = None,
    clients: str = "both",
    keepalive_connections: int = 4,
) -> LoadResult:
    """Send load until ``seconds`` pass, ``max_requests`` were sent, or ``stop`` is set.

    ``clients`` (both, new, keep-alive) picks the kinds of client; both share the rate and the request
    budget evenly, each on its own schedule.
    """
    host, port, prefix = check_loopback(url)
    if clients not in CLIENTS:
        raise ValueError(f"clients must be one of {', '.join(CLIENTS)}")
    kinds = CLIENTS[clients]
    body = json.dumps(instance).encode()
    stop = stop or threading.Event()
    result = LoadResult()
    lock = threading.Lock()
    sent = dict.fromkeys(kinds, 0)
    result.began_at = time.time()
    began = time.monotonic()
    deadline = began + seconds
    share = rate / len(kinds)
    budget = max_requests // len(kinds)

    def next_slot(kind: str) -> float | None:
        with lock:
            if sent[kind] >= budget or stop.is_set():
                return None
            slot = began + sent[kind] / share if share > 0 else time.monotonic()
            sent[kind] += 1
        return slot if slot < deadline else None

    def worker(kind: str) -> None:
        kept = KeptAlive(host, port, timeout) if kind == KEEP_ALIVE else None
        try:
            while (slot := next_slot(kind)) is not None:
                delay = slot - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                started = time.monotonic()
                if kept:
                    outcome, version = kept.post(prefix + "/predict", body)
                else:
                    outcome, version = _one(host, port, prefix + "/predict", body, timeout)
                sample = Sample(started - began, time.monotonic() - started, outcome, version, kind)
                with lock:
                    result.samples.append(sample)
        finally:
            if kept:
                kept.close()

    threads = []
    for kind in kinds:
        if kind == KEEP_ALIVE:
            # A few long-lived connections, like an HTTP library's pool.
            count = keepalive_connections if share > 0 else concurrency
        else:
            # Open loop needs enough workers that slow answers do not hold back the schedule.
            count = max(concurrency, int(share * 0.25) + 4) if share > 0 else concurrency
        threads += [threading.Thread(target=worker, args=(kind,), daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + timeout + 5)
    result.seconds = time.monotonic() - began
    result.samples.sort(key=lambda s: s.started)
    return result


def write_csv(result: LoadResult, path: Path) -> None:
    rows = result.per_second()
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["second"])
        writer.writeheader()
        writer.writerows(rows)


def draw_png(result: LoadResult, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result.per_second()
    seconds = [row["second"] for row in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True, height_ratios=[3, 2])
    bottom_stack = [0] * len(rows)
    for version in sorted(result.versions):
        counts = [row[f"ok {version}"] for row in rows]
        top.bar(seconds, counts, bottom=bottom_stack, width=1.0, label=f"model {version}")
        bottom_stack = [a + b for a, b in zip(bottom_stack, counts, strict=True)]
    failed = [row["failed"] for row in rows]
    top.bar(seconds, failed, bottom=bottom_stack, width=1.0, color="crimson", label="failed")
    top.set_ylabel("requests / s")
    top.set_title(title)
    top.legend(loc="lower right", fontsize=8)
    for key, style in (("p50_ms", "-"), ("p99_ms", "--")):
        points = [(row["second"], row[key]) for row in rows if row[key] != ""]
        bottom.plot([p[0] for p in points], [p[1] for p in points], style, label=key.replace("_ms", ""))
    bottom.set_ylabel("latency (ms)")
    bottom.set_xlabel("seconds since start")
    bottom.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="the balancer (loopback only)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="artifact whose features to send")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second; 0 = closed loop")
    parser.add_argument("--concurrency", type=int, default=8, help="connections in closed loop")
    parser.add_argument("--clients", choices=sorted(CLIENTS), default="both", help="kinds of client (default both)")
    parser.add_argument("--keepalive-connections", type=int, default=4, help="connections the keep-alive client keeps")
    parser.add_argument("--seconds", type=float, default=30.0, help="stop after this long (default 30)")
    parser.add_argument("--requests", type=int, default=100_000, help="stop after this many (default 100000)")
    parser.add_argument("--csv", type=Path, help="write the per-second series here")
    parser.add_argument("--png", type=Path, help="draw the per-second series here")
    parser.add_argument("--title", default="prediction load", help="title of the picture")
    args = parser.parse_args(argv)
    if args.seconds > 3600 or args.requests > 10_000_000:
        parser.error("a run is bounded: at most 3600 s and 10,000,000 requests")
    try:
        result = run_load(
            args.url,
            instance_from(args.model),
            args.rate,
            args.concurrency,
            args.seconds,
            args.requests,
            clients=args.clients,
            keepalive_connections=args.keepalive_connections,
        )
    except ValueError as exc:
        parser.error(str(exc))
    print(result.summary())
    if args.csv:
        write_csv(result, args.csv)
    if args.png:
        draw_png(result, args.png, args.title)
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
