"""The canary gate (plugins/modules/canary_gate.py): its judgement, then the whole gate against a real
Prometheus that scrapes four hosts serving metrics of a baseline and three canaries."""

from __future__ import annotations

import importlib.util
import math
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
_SPEC = importlib.util.spec_from_file_location("canary_gate", ROOT / "plugins/modules/canary_gate.py")
gate = importlib.util.module_from_spec(_SPEC)
sys.modules["canary_gate"] = gate
_SPEC.loader.exec_module(gate)
PROMETHEUS = ROOT / ".cache/prometheus-tools/bin/prometheus"

Stats, Thresholds, judge = gate.Stats, gate.Thresholds, gate.judge
HEALTHY = Stats(requests=1000, errors=0, p99_seconds=0.004, targets=2, ready=True)


def failing(requests: float, errors: float, **more: object) -> Stats:
    """A side whose failed answers are all 5xx."""
    return Stats(requests=requests, errors=errors, server_errors=errors, **more)


def test_a_canary_like_its_baseline_is_promoted() -> None:
    canary = Stats(requests=500, errors=1, p99_seconds=0.006, targets=1, ready=True)
    assert judge(canary, HEALTHY, Thresholds()) == ("promote", [])


def test_errors_over_the_ceiling_or_over_the_baseline_roll_back() -> None:
    over_ceiling = failing(500, 10, p99_seconds=0.004, targets=1, ready=True)
    verdict, reasons = judge(over_ceiling, HEALTHY, Thresholds(max_error_ratio=0.01))
    assert verdict == "rollback"
    assert reasons == ["5xx ratio 2.00% > ceiling 1.00%"]
    noisy_baseline = failing(1000, 2, p99_seconds=0.004, targets=2, ready=True)
    worse = failing(1000, 30, p99_seconds=0.004, targets=1, ready=True)
    verdict, reasons = judge(worse, noisy_baseline, Thresholds(max_error_ratio=0.05, max_error_ratio_increase=0.005))
    assert verdict == "rollback"
    assert reasons == [
        "error ratio 3.00% > baseline 0.20% + 0.50% (one-sided z 4.1 >= 1.65; 30 of 1000 against 2 of 1000)"
    ]


def test_an_excess_of_errors_must_hold_statistically() -> None:
    baseline = failing(1000, 2, p99_seconds=0.004, targets=2, ready=True)
    limits = Thresholds(max_error_ratio=0.05, max_error_ratio_increase=0.005)
    # 0.9 % against 0.2 %: over the allowed 0.5 points, but 9 errors in 1,000 do not show it (z 0.6).
    noise = failing(1000, 9, p99_seconds=0.004, targets=1, ready=True)
    assert gate.excess_z(noise, baseline, 0.005) == pytest.approx(0.6, abs=0.05)
    assert judge(noise, baseline, limits) == ("promote", [])
    # The same ratio over ten times the requests does (z 2.5).
    sustained = failing(10000, 90, p99_seconds=0.004, targets=1, ready=True)
    assert judge(sustained, failing(10000, 20, p99_seconds=0.004, targets=2, ready=True), limits)[0] == "rollback"
    # No error on either side: no excess, whatever the numbers.
    assert gate.excess_z(HEALTHY, HEALTHY, 0.005) == -math.inf
    # A stricter confidence needs a clearer excess.
    assert (
        judge(worse_than(baseline), baseline, Thresholds(max_error_ratio=0.05, error_z=gate.z_of(0.999)))[0]
        == "promote"
    )
    assert gate.z_of(0.95) == pytest.approx(1.645, abs=1e-3)
    with pytest.raises(ValueError, match="error_confidence"):
        gate.z_of(1.0)


def worse_than(baseline: Stats) -> Stats:
    """A canary 2 points worse than ``baseline`` on 400 requests: significant at 95 %, not at 99.9 %."""
    return failing(400, baseline.error_ratio * 400 + 10, p99_seconds=0.004, targets=1, ready=True)


def test_4xx_are_judged_against_the_baseline_not_the_ceiling() -> None:
    # Some clients always send malformed requests: the old and the new release refuse them alike.
    sloppy_clients = Stats(requests=1000, errors=30, p99_seconds=0.004, targets=2, ready=True)
    canary = Stats(requests=500, errors=16, p99_seconds=0.004, targets=1, ready=True)
    assert judge(canary, sloppy_clients, Thresholds(max_error_ratio=0.01)) == ("promote", [])
    # A model that refuses what the old one answered: its clients' 4xx jump against the baseline's.
    refusing = Stats(requests=500, errors=150, p99_seconds=0.004, targets=1, ready=True)
    verdict, reasons = judge(refusing, sloppy_clients, Thresholds(max_error_ratio=0.01))
    assert verdict == "rollback"
    assert reasons == [
        "error ratio 30.00% > baseline 3.00% + 0.50% (one-sided z 12.5 >= 1.65; 150 of 500 against 30 of 1000)"
    ]


def test_p99_over_the_ceiling_or_much_slower_than_the_baseline_rolls_back() -> None:
    slow = Stats(requests=500, errors=0, p99_seconds=0.8, targets=1, ready=True)
    assert judge(slow, HEALTHY, Thresholds())[1] == ["p99 800.0 ms > ceiling 500.0 ms"]
    slower = Stats(requests=500, errors=0, p99_seconds=0.030, targets=1, ready=True)
    verdict, reasons = judge(slower, HEALTHY, Thresholds(max_p99_ratio=1.5, p99_tolerance_seconds=0.01))
    assert verdict == "rollback"
    assert reasons == ["p99 30.0 ms > 1.5 x baseline 4.0 ms (26.0 ms slower; tolerance 10 ms)"]


def histogram(requests: float, slower: float, bound: float = 0.005) -> list[tuple[float, float]]:
    """A latency histogram of ``requests`` of which ``slower`` took more than ``bound`` (all under 100 ms)."""
    edges = [0.0025, 0.005, 0.01, 0.025, 0.1]
    return [(le, requests - slower if le <= bound else requests) for le in edges] + [(math.inf, requests)]


def test_a_slower_p99_the_histograms_do_not_bear_out_is_noise_and_noted() -> None:
    # 3 of 200 canary requests over 25 ms (1.5 %) against 10 of 1,000 (1.0 %): the canary's p99 is 30 ms
    # against 25 ms, over a ratio of 1.1 and 2 ms, but 3 slow requests are no evidence (one-sided z 0.5).
    baseline = Stats(
        requests=1000, p99_seconds=0.025, targets=2, ready=True, latency_buckets=histogram(1000, 10, bound=0.025)
    )
    canary = Stats(
        requests=200, p99_seconds=0.030, targets=1, ready=True, latency_buckets=histogram(200, 3, bound=0.025)
    )
    limits = Thresholds(min_requests=200, max_p99_ratio=1.1, p99_tolerance_seconds=0.002)
    assert judge(canary, baseline, limits) == ("promote", [])
    # Not counted, but said: the operator sees the slower p99 and why it was no verdict.
    assert gate.latency_notes(canary, baseline, limits) == [
        "p99 30.0 ms against baseline 25.0 ms not counted: 1.5% of the canary's requests slower than 25 ms against "
        "1.0% of the baseline's (3 of 200 against 10 of 1000; one-sided z 0.5 < 1.65)"
    ]
    # The same p99s without the histograms: the point estimates alone decide, as they must.
    bare = Stats(requests=200, p99_seconds=0.030, targets=1, ready=True)
    unbinned = Stats(requests=1000, p99_seconds=0.025, targets=2, ready=True)
    assert judge(bare, unbinned, limits)[0] == "rollback"
    assert gate.latency_notes(bare, unbinned, limits) == []


def test_a_slower_tail_with_enough_requests_rolls_back_with_its_counts() -> None:
    baseline = Stats(requests=1000, p99_seconds=0.005, targets=2, ready=True, latency_buckets=histogram(1000, 10))
    canary = Stats(
        requests=2000, p99_seconds=0.060, targets=1, ready=True, latency_buckets=histogram(2000, 100, bound=0.025)
    )
    verdict, reasons = judge(canary, baseline, Thresholds())
    assert verdict == "rollback"
    assert reasons == [
        "p99 60.0 ms > 1.5 x baseline 5.0 ms (55.0 ms slower; tolerance 10 ms): 5.0% of the canary's requests "
        "slower than 25 ms against 0.0% of the baseline's (100 of 2000 against 0 of 1000; one-sided z 10.3 >= 1.65)"
    ]
    assert gate.latency_notes(canary, baseline, Thresholds()) == []
    # As many slow requests in the same share, but a p99 within the ratio: no verdict from latency.
    close = Stats(
        requests=2000, p99_seconds=0.006, targets=1, ready=True, latency_buckets=histogram(2000, 100, bound=0.025)
    )
    assert judge(close, baseline, Thresholds())[0] == "promote"


def test_a_slower_tail_inside_the_baselines_p99_bucket_is_still_seen() -> None:
    # Both p99s in the (10, 25] ms bucket: 12 of 1,000 baseline requests over 10 ms against 60 of 1,000 of the
    # canary's. Counted above the bucket bound under the canary's p99 (10 ms), the excess is plain.
    baseline = Stats(
        requests=1000, p99_seconds=0.0125, targets=2, ready=True, latency_buckets=histogram(1000, 12, bound=0.01)
    )
    canary = Stats(
        requests=1000, p99_seconds=0.0225, targets=1, ready=True, latency_buckets=histogram(1000, 60, bound=0.01)
    )
    verdict, reasons = judge(canary, baseline, Thresholds(p99_tolerance_seconds=0.005))
    assert verdict == "rollback"
    assert "6.0% of the canary's requests slower than 10 ms against 1.2% of the baseline's" in reasons[0]


def test_histograms_with_different_buckets_leave_the_point_comparison_alone() -> None:
    # A release that changed its histogram's bucket bounds: no common bound to count at.
    baseline = Stats(requests=1000, p99_seconds=0.005, targets=2, ready=True, latency_buckets=histogram(1000, 10))
    other = [(0.004, 100.0), (0.02, 190.0), (0.2, 200.0), (math.inf, 200.0)]
    canary = Stats(requests=200, p99_seconds=0.030, targets=1, ready=True, latency_buckets=other)
    assert gate.slower_tail(canary, baseline) is None
    assert judge(canary, baseline, Thresholds(min_requests=200))[0] == "rollback"


def test_a_slower_p99_within_the_tolerance_is_noise() -> None:
    canary = Stats(requests=500, errors=0, p99_seconds=0.009, targets=1, ready=True)
    assert judge(canary, HEALTHY, Thresholds(max_p99_ratio=1.5, p99_tolerance_seconds=0.01))[0] == "promote"


def test_no_verdict_on_too_few_requests_unless_told() -> None:
    quiet = Stats(requests=20, errors=20, p99_seconds=2.0, targets=1, ready=True)
    assert judge(quiet, HEALTHY, Thresholds(min_requests=100)) == ("rollback", ["too few requests to judge: 20 < 100"])
    assert judge(quiet, HEALTHY, Thresholds(min_requests=100, on_too_few_requests="promote")) == ("promote", [])
    not_ready = Stats(requests=20, targets=1, ready=False)
    assert judge(not_ready, HEALTHY, Thresholds(min_requests=100, on_too_few_requests="promote"))[0] == "rollback"


def test_a_baseline_without_enough_traffic_is_not_compared_with() -> None:
    idle = Stats(requests=3, errors=0, p99_seconds=0.001, targets=2, ready=True, classes={"1": 3})
    canary = Stats(requests=500, errors=2, p99_seconds=0.009, targets=1, ready=True, classes={"2": 500})
    limits = Thresholds(min_requests=100, max_error_ratio_increase=0.001, max_class_mix_psi=0.2)
    verdict, reasons = judge(canary, idle, limits)
    assert (verdict, reasons) == ("rollback", ["too few baseline requests to compare with: 3 < 100"])
    # Told to promote on too few requests: only the ceilings judge, not the idle baseline's numbers.
    lenient = Thresholds(min_requests=100, max_error_ratio_increase=0.001, max_class_mix_psi=0.2,
                         on_too_few_requests="promote")  # fmt: skip
    assert judge(canary, idle, lenient) == ("promote", [])
    broken = failing(500, 50, p99_seconds=0.009, targets=1, ready=True)
    assert judge(broken, idle, lenient) == ("rollback", ["5xx ratio 10.00% > ceiling 1.00%"])


def test_psi_of_class_counts() -> None:
    assert gate.psi({"a": 50, "b": 50}, {"a": 5, "b": 5}) == 0.0
    assert gate.psi({"a": 50, "b": 50}, {"a": 90, "b": 10}) == pytest.approx(0.4 * math.log(1.8) + 0.4 * math.log(5))
    assert math.isfinite(gate.psi({"a": 50, "b": 50}, {"a": 10}))


def test_a_class_mix_unlike_the_baselines_rolls_back_only_when_asked() -> None:
    baseline = Stats(requests=1000, p99_seconds=0.004, targets=2, ready=True, classes={"1": 500, "2": 500})
    same = Stats(requests=500, p99_seconds=0.004, targets=1, ready=True, classes={"1": 240, "2": 260})
    shifted = Stats(requests=500, p99_seconds=0.004, targets=1, ready=True, classes={"1": 480, "2": 20})
    assert judge(shifted, baseline, Thresholds())[0] == "promote"
    assert judge(same, baseline, Thresholds(max_class_mix_psi=0.2)) == ("promote", [])
    verdict, (reason,) = judge(shifted, baseline, Thresholds(max_class_mix_psi=0.2))
    assert verdict == "rollback"
    assert reason.startswith("class mix PSI 1.")


def test_a_canary_that_got_far_less_than_its_share_is_rolled_back() -> None:
    baseline = Stats(requests=9000, targets=2, ready=True, p99_seconds=0.01)
    # A tenth of the requests, as the weights say: judged on its merits.
    at_share = Stats(requests=1000, targets=1, ready=True, p99_seconds=0.01)
    assert judge(at_share, baseline, Thresholds(expected_share=10)) == ("promote", [])
    # A canary the balancer benched (failing health checks) answers a sliver: enough requests, wrong share.
    benched = Stats(requests=300, targets=1, ready=True, p99_seconds=0.01)
    verdict, reasons = judge(benched, baseline, Thresholds(expected_share=10))
    assert verdict == "rollback"
    assert reasons == [
        "the canary answered 3.2% of the requests, less than 0.5 x its share of 10%: its hosts failed health "
        "checks or left service"
    ]
    # Unchecked without an expected share; a baseline with no traffic at all makes the canary's share 100 %.
    assert judge(benched, baseline, Thresholds())[0] == "promote"
    assert (
        judge(at_share, Stats(targets=2, ready=True), Thresholds(expected_share=10, on_too_few_requests="promote"))[0]
        == "promote"
    )


def test_a_canary_that_costs_more_cpu_per_request_is_rolled_back_even_when_fast() -> None:
    # As fast as the baseline on its lightly loaded host, but 3 ms of CPU per request against 1 ms: the
    # same traffic would need three times the hosts.
    baseline = Stats(requests=1000, p99_seconds=0.004, targets=2, ready=True, cpu_seconds=1.0)
    costly = Stats(requests=500, p99_seconds=0.004, targets=1, ready=True, cpu_seconds=1.5)
    verdict, reasons = judge(costly, baseline, Thresholds())
    assert verdict == "rollback"
    assert reasons == ["CPU per request 3.00 ms > 1.5 x baseline 1.00 ms: the same traffic would need 3.0 x the hosts"]
    # Within the ratio, or above it by less than the tolerance (cheap models are noisy): promoted.
    assert judge(Stats(requests=500, targets=1, ready=True, cpu_seconds=0.7), baseline, Thresholds())[0] == "promote"
    cheap = Stats(requests=1000, targets=2, ready=True, cpu_seconds=0.1)  # 0.1 ms per request
    assert judge(Stats(requests=500, targets=1, ready=True, cpu_seconds=0.15), cheap, Thresholds())[0] == "promote"
    assert judge(costly, baseline, Thresholds(max_cpu_ratio=4))[0] == "promote"


def test_cpu_is_not_compared_without_the_metric_or_enough_baseline_traffic() -> None:
    baseline = Stats(requests=1000, targets=2, ready=True, cpu_seconds=1.0)
    costly = Stats(requests=500, targets=1, ready=True, cpu_seconds=5.0)
    # A release before the metric existed (either side): nothing to compare, no verdict from it.
    assert judge(Stats(requests=500, targets=1, ready=True), baseline, Thresholds()) == ("promote", [])
    assert judge(costly, Stats(requests=1000, targets=2, ready=True), Thresholds()) == ("promote", [])
    idle = Stats(requests=3, targets=2, ready=True, cpu_seconds=0.003)
    assert judge(costly, idle, Thresholds(on_too_few_requests="promote")) == ("promote", [])
    assert Stats(requests=0, cpu_seconds=0.0).cpu_per_request is None


def test_a_canary_prometheus_does_not_see_is_rolled_back() -> None:
    assert judge(Stats(), HEALTHY, Thresholds()) == ("rollback", ["no canary target is scraped by Prometheus"])


class LatePrometheus:
    """Prometheus's answers as a function of the time asked about: each side answers ``rate`` requests a
    second from its own start on (``arrives``, seconds after the gate starts), with ``errors`` of them
    failing (5xx). Data that comes late is what a canary joining mid-window or a slow scrape looks like."""

    def __init__(self, arrives: dict[str, float], errors: dict[str, float] | None = None, rate: float = 10) -> None:
        self.arrives, self.errors, self.rate = arrives, errors or {}, rate
        self.asked: list[float] = []

    def scalar(self, promql: str, at: float | None = None) -> float | None:
        assert at is not None
        self.asked.append(at)
        side = "canary" if 'release="c"' in promql else "baseline"
        span = re.search(r"\[(\d+)s\]", promql)
        window = int(span.group(1)) if span else 0
        seconds = max(0.0, at - max(self.arrives[side], at - window))
        requests = self.rate * seconds
        failed = requests * self.errors.get(side, 0.0)
        if "histogram_quantile" in promql:
            return 0.004 if requests else None
        if "count(up" in promql or "min_over_time" in promql:
            return 1
        if "request_cpu_seconds" in promql:
            return requests * 0.001
        if 'status=~"5..' in promql or 'status=~"[45]' in promql:
            return failed
        return requests

    def query(self, promql: str, at: float | None = None) -> list[dict[str, object]]:
        return []


def _late_gate(prom: LatePrometheus, **limits: object) -> dict[str, object]:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    return gate.run_gate(
        prom,  # type: ignore[arg-type]
        'release="c"',
        'release!="c"',
        Thresholds(min_requests=200, **limits),  # type: ignore[arg-type]
        window=60,
        max_wait=300,
        poll_interval=5,
        clock=lambda: now[0],
        sleep=sleep,
    )


def test_a_canary_whose_data_comes_late_is_waited_for_and_judged_on_it() -> None:
    # The canary's requests start 50 s in: at 60 s it has 100 of the 200 needed; the gate waits for them
    # and judges the failing canary it then sees.
    result = _late_gate(LatePrometheus({"canary": 50, "baseline": 0}, {"canary": 0.05}))
    assert result["verdict"] == "rollback", result["summary"]
    assert "5xx ratio" in " ".join(result["reasons"])  # type: ignore[arg-type]
    assert result["canary"]["requests"] >= 200  # type: ignore[index]
    assert 70 <= result["waited"] <= 80


def test_a_baseline_whose_data_comes_late_is_waited_for_too() -> None:
    # The canary has its requests at once; the baseline's come 45 s in. The gate compares only once both
    # have enough, rather than judging against a baseline it cannot compare with.
    result = _late_gate(LatePrometheus({"canary": 0, "baseline": 45}))
    assert result["verdict"] == "promote", result["summary"]
    assert result["baseline"]["requests"] >= 200  # type: ignore[index]
    assert result["waited"] >= 60


def test_data_that_never_comes_is_judged_by_the_no_data_rule_at_the_deadline() -> None:
    never = LatePrometheus({"canary": 1e9, "baseline": 0})
    result = _late_gate(never)
    assert result["verdict"] == "rollback"
    assert result["reasons"] == ["too few requests to judge: 0 < 200"]
    assert 295 <= result["waited"] <= 300, "the gate gave up at max_wait, not before"
    promoted = _late_gate(LatePrometheus({"canary": 1e9, "baseline": 0}), on_too_few_requests="promote")
    assert promoted["verdict"] == "promote"
    # Every question was about a time the gate had reached: nothing judged ahead of its data.
    assert max(never.asked) <= 300


def test_a_canary_that_plainly_fails_its_clients_is_stopped_before_its_window_ends() -> None:
    # 30 % of the canary's answers fail from the start (a renamed feature's 422s): by the first poll each
    # side answered 50 requests, more than the early check needs (a fifth of 200), and the excess holds at
    # z >= 3.29: rolled back 5 s into a 60 s window instead of after it.
    prom = LatePrometheus({"canary": 0, "baseline": 0}, {"canary": 0.3})
    result = _late_gate(prom)
    assert result["verdict"] == "rollback", result["summary"]
    assert result["waited"] == 5
    assert result["window"] == 5
    assert result["notes"] == ["stopped early, after 5 s of the 60 s window"]
    excess = "error ratio 30.00% > baseline 0.00% + 0.50%"
    [reason] = [r for r in result["reasons"] if r.startswith(excess)]  # type: ignore[union-attr]
    assert "(one-sided z" in reason, reason
    assert ">= 3.29; 15 of 50 against 0 of 50)" in reason, reason
    assert "5xx ratio 30.00% > ceiling 1.00%" in result["reasons"]  # type: ignore[operator]
    assert str(result["summary"]).startswith("rollback: canary 50 requests, errors 30.00%; baseline 50 requests")
    assert "stopped early" in str(result["summary"])
    assert max(prom.asked) <= 5, "nothing asked about a time the gate had not reached"


def test_a_canary_only_somewhat_worse_is_judged_on_its_whole_window() -> None:
    # 2 % failed answers against none: not plain on 50 requests (z 1.6 at the first poll), a verdict on the
    # window's 600 (z 2.6 >= 1.645): rolled back, but after the window, as the verdict's own test says.
    result = _late_gate(LatePrometheus({"canary": 0, "baseline": 0}, {"canary": 0.02}))
    assert result["verdict"] == "rollback", result["summary"]
    assert result["waited"] >= 60
    assert "stopped early" not in str(result["summary"])
    healthy = _late_gate(LatePrometheus({"canary": 0, "baseline": 0}))
    assert (healthy["verdict"], healthy["waited"] >= 60) == ("promote", True), healthy["summary"]


def test_the_early_check_waits_for_a_baseline_to_compare_with() -> None:
    # The canary fails 30 % from the start, the baseline's requests come 45 s in: nothing is stopped on the
    # canary's numbers alone; once the baseline answered enough (50 s), the comparison stops it.
    result = _late_gate(LatePrometheus({"canary": 0, "baseline": 45}, {"canary": 0.3}))
    assert result["verdict"] == "rollback", result["summary"]
    assert result["waited"] == 50
    assert result["baseline"]["requests"] >= 40  # type: ignore[index]


# --- against a real Prometheus ---------------------------------------------------------------------

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
V2_INFER, V2_VERSION_INFER = "/v2/models/<name>/infer", "/v2/models/<name>/versions/<version>/infer"


class Host:
    """The model service's metrics of one host whose counters grow with the clock, as under load."""

    def __init__(
        self,
        release: str,
        rate: float,
        error_ratio: float,
        latency: float,
        ready: int = 1,
        mix: tuple[float, float] = (0.5, 0.5),
        route: str = "/predict",
        error_status: str = "500",
        cpu: float = 0.001,
    ) -> None:
        self.release, self.rate, self.error_ratio, self.latency, self.ready = release, rate, error_ratio, latency, ready
        self.mix, self.route, self.error_status, self.cpu = mix, route, error_status, cpu
        self.started = time.monotonic()

    def render(self) -> str:
        n = (time.monotonic() - self.started) * self.rate
        bad = n * self.error_ratio
        route = self.route
        lines = [
            f'model_service_requests_total{{route="{route}",method="POST",status="200"}} {n - bad:.3f}',
            f'model_service_requests_total{{route="{route}",method="POST",status="{self.error_status}"}} {bad:.3f}',
            f'model_service_requests_total{{route="/health",method="GET",status="200"}} {n * 10:.3f}',
            f'model_service_ready{{pid="1"}} {self.ready}',
            f'model_service_request_cpu_seconds_total{{route="{route}"}} {n * self.cpu:.6f}',
        ]
        for label, share in zip(("1", "2"), self.mix, strict=True):
            lines.append(f'model_service_predictions_total{{model="m",version="1",class="{label}"}} {n * share:.3f}')
        for le in BUCKETS:
            lines.append(
                f'model_service_request_duration_seconds_bucket{{route="{route}",le="{le}"}} '
                f"{n if self.latency <= le else 0:.3f}"
            )
        lines.append(f'model_service_request_duration_seconds_bucket{{route="{route}",le="+Inf"}} {n:.3f}')
        return "\n".join(lines) + "\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[gate.Prometheus]:
    if not PROMETHEUS.exists():
        pytest.fail("the real Prometheus is missing: run tools/install-prometheus-tools.sh (make setup does)")
    hosts = {
        "base-1": Host("r1", rate=40, error_ratio=0.001, latency=0.004),
        "base-2": Host("r1", rate=40, error_ratio=0.001, latency=0.004),
        "good": Host("r2-good", rate=20, error_ratio=0.0, latency=0.004),
        "slow": Host("r2-slow", rate=20, error_ratio=0.0, latency=0.2),
        "failing": Host("r2-failing", rate=20, error_ratio=0.2, latency=0.004),
        # As fast, but six times the CPU per request.
        "costly": Host("r2-costly", rate=20, error_ratio=0.0, latency=0.004, cpu=0.006),
        "idle": Host("r2-idle", rate=0.5, error_ratio=0.0, latency=0.004),
        "shifted": Host("r2-shifted", rate=20, error_ratio=0.0, latency=0.004, mix=(0.95, 0.05)),
        # A model that broke the input contract: a share of its clients' rows is refused with 422.
        "contract": Host("r2-contract", rate=20, error_ratio=0.3, latency=0.004, error_status="422"),
        # Clients asked to slow down (429) have not failed: the canary is as good as its baseline.
        "throttled": Host("r2-throttled", rate=20, error_ratio=0.3, latency=0.004, error_status="429"),
        # Open Inference Protocol clients only: no /predict request at all.
        "v2-good": Host("r2-v2-good", rate=20, error_ratio=0.0, latency=0.004, route=V2_INFER),
        "v2-failing": Host("r2-v2-failing", rate=20, error_ratio=0.2, latency=0.004, route=V2_VERSION_INFER),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = hosts[self.path.strip("/").split("/")[0]].render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    work = tmp_path_factory.mktemp("prometheus")
    jobs = "\n".join(
        f"  - job_name: model_service_{name}\n    metrics_path: /{name}\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{server.server_port}']\n"
        f"        labels: {{job: model_service, instance: {name}, release: {host.release}}}"
        for name, host in hosts.items()
    )
    (work / "prometheus.yml").write_text(f"global:\n  scrape_interval: 1s\nscrape_configs:\n{jobs}\n")
    port = _free_port()
    process = subprocess.Popen(
        [
            str(PROMETHEUS),
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        prom = gate.Prometheus(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if prom.scalar('count(up{job="model_service"} == 1)') == len(hosts):
                    break
            except gate.PrometheusError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("Prometheus did not scrape the hosts within 30 s")
        yield prom
    finally:
        process.terminate()
        process.wait(10)
        server.shutdown()


def _run(prom: gate.Prometheus, release: str, **limits: object) -> dict:
    return gate.run_gate(
        prom,
        f'release="{release}"',
        'release="r1"',
        Thresholds(**{"min_requests": 50, **limits}),
        window=6,
        max_wait=12,
        poll_interval=1,
    )


def test_real_prometheus_promotes_a_healthy_canary(prometheus: gate.Prometheus) -> None:
    result = _run(prometheus, "r2-good")
    assert result["verdict"] == "promote", result["summary"]
    assert result["canary"]["targets"] == 1
    assert result["baseline"]["targets"] == 2
    assert result["canary"]["requests"] >= 50
    assert 0.0025 < result["canary"]["p99_seconds"] <= 0.005
    assert result["summary"].startswith("promote: canary ")
    assert 0.0008 < result["canary"]["cpu_per_request_seconds"] < 0.0012


def test_real_prometheus_rolls_back_a_canary_that_costs_more_cpu(prometheus: gate.Prometheus) -> None:
    result = _run(prometheus, "r2-costly")
    assert result["verdict"] == "rollback", result["summary"]
    assert 0.005 < result["canary"]["cpu_per_request_seconds"] < 0.007
    assert 0.0008 < result["baseline"]["cpu_per_request_seconds"] < 0.0012
    assert [r for r in result["reasons"] if r.startswith("CPU per request ")], result["reasons"]
    assert "CPU 6.00 ms/request" in result["summary"]


def test_real_prometheus_rolls_back_a_slow_canary(prometheus: gate.Prometheus) -> None:
    result = _run(prometheus, "r2-slow")
    assert result["verdict"] == "rollback"
    assert result["canary"]["p99_seconds"] > 0.1
    [reason] = [reason for reason in result["reasons"] if reason.startswith("p99 ") and "x baseline" in reason]
    # Counted in Prometheus' histograms: every canary request over the bucket bound under its p99, none of
    # the baseline's.
    assert "100.0% of the canary's requests slower than 100 ms against 0.0% of the baseline's" in reason, reason


def test_real_prometheus_rolls_back_a_failing_canary(prometheus: gate.Prometheus) -> None:
    result = _run(prometheus, "r2-failing")
    assert result["verdict"] == "rollback"
    assert 0.15 < result["canary"]["error_ratio"] < 0.25
    assert result["baseline"]["error_ratio"] < 0.01
    assert any("> ceiling" in reason for reason in result["reasons"])


def test_real_prometheus_waits_for_enough_requests_then_applies_the_policy(prometheus: gate.Prometheus) -> None:
    began = time.monotonic()
    result = _run(prometheus, "r2-idle")
    assert time.monotonic() - began >= 11
    assert result["verdict"] == "rollback"
    assert result["reasons"][0].startswith("too few requests to judge")


def test_a_prometheus_that_does_not_answer_is_an_error() -> None:
    with pytest.raises(gate.PrometheusError, match="cannot ask Prometheus"):
        gate.Prometheus(f"http://127.0.0.1:{_free_port()}", timeout=2).query("up")


def test_real_prometheus_rolls_back_a_canary_whose_class_mix_shifted_when_asked(prometheus: gate.Prometheus) -> None:
    assert _run(prometheus, "r2-shifted")["verdict"] == "promote"
    result = _run(prometheus, "r2-shifted", max_class_mix_psi=0.2)
    assert result["verdict"] == "rollback", result["summary"]
    assert result["canary"]["classes"]["1"] > 10 * result["canary"]["classes"]["2"]
    assert any(reason.startswith("class mix PSI") for reason in result["reasons"]), result
    assert _run(prometheus, "r2-good", max_class_mix_psi=0.2)["verdict"] == "promote"


def test_real_prometheus_rolls_back_a_canary_whose_clients_get_4xx(prometheus: gate.Prometheus) -> None:
    result = _run(prometheus, "r2-contract")
    assert result["verdict"] == "rollback", result["summary"]
    assert 0.25 < result["canary"]["error_ratio"] < 0.35
    assert any(reason.startswith("error ratio ") and "> baseline" in reason for reason in result["reasons"]), result


def test_real_prometheus_does_not_count_429_as_a_failure(prometheus: gate.Prometheus) -> None:
    result = _run(prometheus, "r2-throttled")
    assert result["verdict"] == "promote", result["summary"]
    assert result["canary"]["error_ratio"] == 0.0


def test_real_prometheus_judges_a_canary_on_v2_traffic_alone(prometheus: gate.Prometheus) -> None:
    good = _run(prometheus, "r2-v2-good")
    assert good["verdict"] == "promote", good["summary"]
    assert good["canary"]["requests"] >= 50
    assert 0.0025 < good["canary"]["p99_seconds"] <= 0.005
    broken = _run(prometheus, "r2-v2-failing")
    assert broken["verdict"] == "rollback", broken["summary"]
    assert 0.15 < broken["canary"]["error_ratio"] < 0.25


def test_real_prometheus_does_not_compare_with_a_baseline_without_traffic(prometheus: gate.Prometheus) -> None:
    limits = Thresholds(min_requests=50)
    result = gate.run_gate(
        prometheus, 'release="r2-good"', 'release="r2-idle"', limits, window=6, max_wait=12, poll_interval=1
    )
    assert result["verdict"] == "rollback", result["summary"]
    assert result["baseline"]["requests"] < 50
    assert result["reasons"] == [
        f"too few baseline requests to compare with: {result['baseline']['requests']:.0f} < 50"
    ]
