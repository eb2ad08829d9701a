#!/usr/bin/python
"""Ansible module: judge a canary release from live Prometheus metrics (promote or roll back)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: canary_gate
short_description: Judge a canary release against its baseline from live Prometheus metrics
description:
  - >-
    Watches the canary (the hosts of the new release, which already take a share of live traffic) for
    O(window) seconds, then asks Prometheus how it compares with the baseline (the hosts of the release
    serving before) in the ratio of answers that failed their client (every 5xx, and every 4xx but 429:
    a model that breaks the input contract answers 422), the p99 latency of predictions, and whether every
    canary host was scraped and ready during the whole window. Every prediction route counts: C(/predict)
    and the Open Inference Protocol's C(infer) routes.
  - >-
    The verdict is C(promote) or C(rollback), with the numbers it is based on and the reasons. A
    verdict is only given once the canary and the baseline each answered O(min_requests) requests in the
    window (data that comes late is waited for); until then the window slides, for at most O(max_wait)
    seconds, after which O(on_too_few_requests) decides.
  - >-
    A canary that plainly fails its clients is stopped before its window ends: the gate asks every
    O(poll_interval) seconds, and once each side answered a fifth of O(min_requests) (at least 20), a canary
    whose ratio of failed answers exceeds the baseline's by more than O(max_error_ratio_increase) with a
    one-sided z of at least 3.29 (strict, since it is asked at every poll) is rolled back at once, so that
    clients feel a renamed feature for seconds, not for a whole window.
  - >-
    The module only reads; acting on the verdict is the playbook's part, so that every provider (the
    local fleet's first batch, a weighted target group on AWS) uses the same judgement.
version_added: "1.1.0"
author: modelfleet
options:
  prometheus_url:
    description: Base URL of the Prometheus HTTP API.
    type: str
    default: http://127.0.0.1:9090
  canary:
    description: PromQL label matchers that select the canary's series, such as C(release="1.1.0-abc").
    type: str
    required: true
  baseline:
    description: Label matchers that select the baseline's series, such as C(release!="1.1.0-abc").
    type: str
    required: true
  job:
    description: Scrape job of the model service.
    type: str
    default: model_service
  route:
    description: >-
      Routes whose requests are judged, as a regular expression of the service's route labels (default:
      every prediction route, C(/predict) and the v2 C(infer) routes).
    type: str
    default: /predict|/v2/models/<name>/infer|/v2/models/<name>/versions/<version>/infer
  window:
    description: Seconds of live traffic the verdict is based on.
    type: int
    default: 120
  min_requests:
    description: >-
      Requests the canary and the baseline must each have answered in the window before any verdict
      (waited for, up to O(max_wait)). A baseline that still answered fewer is not compared with (the
      ceilings still apply), and O(on_too_few_requests) decides whether that alone rolls back.
    type: int
    default: 200
  max_wait:
    description: Seconds to wait for O(min_requests) in total, including the first window.
    type: int
    default: 600
  poll_interval:
    description: Seconds between two looks while waiting for enough requests.
    type: int
    default: 5
  max_error_ratio:
    description: >-
      Ceiling of the canary's 5xx ratio, whatever the baseline's (4xx answers are judged against the
      baseline only: some clients always send malformed requests).
    type: float
    default: 0.01
  max_error_ratio_increase:
    description: >-
      How much the canary's ratio of failed answers (every 5xx, and every 4xx but 429) may exceed the
      baseline's over the same window.
    type: float
    default: 0.005
  error_confidence:
    description: >-
      Confidence of the one-sided test that the canary fails more answers than the baseline by more than
      O(max_error_ratio_increase): the excess must hold at this confidence, so that a few errors among few
      requests are not a verdict (the 5xx ceiling still applies at once).
    type: float
    default: 0.95
  max_p99_seconds:
    description: Ceiling of the canary's p99 latency in seconds, whatever the baseline's.
    type: float
    default: 0.5
  max_p99_ratio:
    description: How many times the baseline's p99 the canary's may be (see O(p99_tolerance_seconds)).
    type: float
    default: 1.5
  p99_tolerance_seconds:
    description: >-
      A canary slower than O(max_p99_ratio) times the baseline is still promoted when the difference is
      under this many seconds (noise on fast services). A p99 over both is a verdict only when the
      latency histograms bear it out: the share of the canary's requests slower than the bucket bound at
      the baseline's p99 must exceed the baseline's share there at O(error_confidence) (one-sided test),
      since each p99 rests on 1 % of a window's requests.
    type: float
    default: 0.01
  max_cpu_ratio:
    description: >-
      How many times the baseline's CPU time per request the canary's may be (the service's
      C(model_service_request_cpu_seconds_total) over its requests; see O(cpu_tolerance_seconds)). A release
      that costs more CPU per request needs more hosts for the same traffic, which its latency does not show
      while its hosts are lightly loaded (a canary takes a small share). Not compared when either side does
      not report the metric.
    type: float
    default: 1.5
  cpu_tolerance_seconds:
    description: >-
      A canary above O(max_cpu_ratio) is still promoted when it costs less than this many CPU seconds per
      request more than the baseline (noise on cheap models).
    type: float
    default: 0.0005
  max_class_mix_psi:
    description: >-
      When set, also compare the mix of predicted classes: the canary and the baseline answer the same
      traffic, so a population stability index of the canary's class shares against the baseline's above
      this value is a regression even without errors (0.2 is the usual "significant shift"). Off when unset.
    type: float
  expected_share:
    description: >-
      The canary's share of the requests in percent, as the balancer's or listener's weights set it. A
      canary that answered less than O(min_share_fraction) of it (of canary and baseline requests together)
      is rolled back: its hosts were failing health checks or were taken out of service, so what it answered
      says little. Unchecked when unset.
    type: float
  min_share_fraction:
    description: The fraction of O(expected_share) the canary must have answered.
    type: float
    default: 0.5
  on_too_few_requests:
    description: The verdict when O(min_requests) never came within O(max_wait) (readiness still counts).
    type: str
    choices: [rollback, promote]
    default: rollback
  timeout:
    description: Seconds to wait for one answer of Prometheus.
    type: int
    default: 10
"""

EXAMPLES = r"""
- name: Judge the canary
  modelfleet.fleet.canary_gate:
    prometheus_url: http://127.0.0.1:9090
    canary: 'release="1.1.0-0123456789ab"'
    baseline: 'release!="1.1.0-0123456789ab"'
    window: 60
    min_requests: 100
  register: gate

- name: Roll back
  ansible.builtin.include_tasks: rollback.yml
  when: gate.verdict == 'rollback'
"""

RETURN = r"""
verdict:
  description: C(promote) or C(rollback).
  returned: always
  type: str
reasons:
  description: Why the canary was rolled back (empty when promoted), each with its numbers.
  returned: always
  type: list
  elements: str
notes:
  description: >-
    What the verdict did not count but an operator should see, with its numbers: a p99 over the baseline's
    ratio and tolerance that the latency histograms did not bear out.
  returned: always
  type: list
  elements: str
canary:
  description: >-
    What the canary did in the window (requests, errors: 5xx and 4xx but 429, server_errors: 5xx,
    error_ratio, server_error_ratio, p99_seconds, targets, ready, and the
    rows predicted per class, classes).
  returned: always
  type: dict
baseline:
  description: The same for the baseline.
  returned: always
  type: dict
waited:
  description: Seconds spent watching.
  returned: always
  type: float
summary:
  description: One line with the verdict and its numbers.
  returned: always
  type: str
"""

import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from ansible.module_utils.basic import AnsibleModule

# The service's route labels of predictions (app/src/model_service/wsgi.py), as a PromQL regular expression.
PREDICTION_ROUTES = "/predict|/v2/models/<name>/infer|/v2/models/<name>/versions/<version>/infer"


class PrometheusError(Exception):
    """Prometheus could not be asked, or refused the query."""


@dataclass
class Stats:
    """One side of the comparison over the window."""

    requests: float = 0.0
    errors: float = 0.0  # what failed its client: every 5xx, and every 4xx but 429
    server_errors: float = 0.0  # 5xx alone
    p99_seconds: float | None = None
    targets: int = 0
    ready: bool = False
    classes: dict[str, float] | None = None
    cpu_seconds: float | None = None  # CPU time spent on the requests (None: the metric is not reported)
    # The latency histogram over the window: (upper bound in seconds, requests at most that slow), by bound,
    # the last bound +Inf. None: not asked (the p99 comparison alone then).
    latency_buckets: list[tuple[float, float]] | None = None

    @property
    def error_ratio(self) -> float:
        return self.errors / self.requests if self.requests > 0 else 0.0

    @property
    def server_error_ratio(self) -> float:
        return self.server_errors / self.requests if self.requests > 0 else 0.0

    @property
    def cpu_per_request(self) -> float | None:
        if self.cpu_seconds is None or self.requests <= 0:
            return None
        return self.cpu_seconds / self.requests

    def slower_than(self, bound: float) -> float | None:
        """Requests slower than ``bound`` (a bucket bound of the histogram), None without the histogram."""
        if not self.latency_buckets:
            return None
        total = self.latency_buckets[-1][1]
        within = max((count for le, count in self.latency_buckets if le <= bound), default=0.0)
        return max(total - within, 0.0)

    def as_dict(self) -> dict[str, Any]:
        found = asdict(self)
        found.pop("latency_buckets")  # the verdict's numbers say what was used of it
        return {
            **found,
            "error_ratio": round(self.error_ratio, 6),
            "server_error_ratio": round(self.server_error_ratio, 6),
            "cpu_per_request_seconds": None if self.cpu_per_request is None else round(self.cpu_per_request, 7),
        }


@dataclass
class Thresholds:
    min_requests: int = 200
    max_error_ratio: float = 0.01
    max_error_ratio_increase: float = 0.005
    max_p99_seconds: float = 0.5
    max_p99_ratio: float = 1.5
    p99_tolerance_seconds: float = 0.01
    on_too_few_requests: str = "rollback"
    max_class_mix_psi: float | None = None
    max_cpu_ratio: float = 1.5
    cpu_tolerance_seconds: float = 0.0005
    expected_share: float | None = None  # percent
    error_z: float = 1.645  # one-sided 95 %
    min_share_fraction: float = 0.5


def psi(expected: dict[str, float], actual: dict[str, float], floor: float = 1e-4) -> float:
    """Population stability index of the shares in ``actual`` against those in ``expected`` (counts per class)."""
    labels = sorted(set(expected) | set(actual))
    total_e, total_a = sum(expected.values()), sum(actual.values())
    value = 0.0
    for label in labels:
        e = max(expected.get(label, 0.0) / total_e, floor)
        a = max(actual.get(label, 0.0) / total_a, floor)
        value += (a - e) * math.log(a / e)
    return value


def z_of(confidence: float) -> float:
    """The one-sided standard normal quantile of ``confidence`` (0.95 -> 1.645)."""
    if not 0.5 <= confidence < 1:
        raise ValueError(f"error_confidence must be in [0.5, 1), not {confidence}")
    from statistics import NormalDist

    return NormalDist().inv_cdf(confidence)


def proportion_excess_z(hits: float, total: float, base_hits: float, base_total: float, margin: float) -> float:
    """One-sided test that the share ``hits / total`` exceeds ``base_hits / base_total`` by more than ``margin``.

    The z statistic of the difference of two proportions against ``margin`` (unpooled standard error):
    how many standard errors the observed excess lies above the allowed one. With no variance on either
    side (none, or all of them) the observed difference decides alone (infinite z).
    """
    pc = hits / total if total > 0 else 0.0
    pb = base_hits / base_total if base_total > 0 else 0.0
    variance = pc * (1 - pc) / max(total, 1) + pb * (1 - pb) / max(base_total, 1)
    excess = pc - pb - margin
    if variance <= 0:
        return math.inf if excess > 0 else -math.inf
    return excess / math.sqrt(variance)


def excess_z(canary: Stats, baseline: Stats, margin: float) -> float:
    """One-sided test that the canary's error ratio exceeds the baseline's by more than ``margin``."""
    return proportion_excess_z(canary.errors, canary.requests, baseline.errors, baseline.requests, margin)


def slower_tail(canary: Stats, baseline: Stats) -> tuple[float, str] | None:
    """Whether the canary's tail is slower than the baseline's beyond chance: (z, what it compared), or None.

    The p99 values are estimates from a handful of requests each (1 % of a window's), interpolated inside a
    histogram bucket. What holds up is a count: the requests slower than the highest bucket bound at or
    under the canary's p99 (more than 1 % of the canary's are, by construction). A canary whose share
    there is larger than the baseline's by a one-sided z >= ``error_z`` is slower in its tail, not
    unlucky. None when a side has no histogram or the two histograms do not share that bound.
    """
    if not canary.latency_buckets or not baseline.latency_buckets or canary.p99_seconds is None:
        return None
    bounds = [le for le, _ in canary.latency_buckets if le <= canary.p99_seconds and math.isfinite(le)]
    if not bounds or bounds[-1] not in {le for le, _ in baseline.latency_buckets}:
        return None
    bound = bounds[-1]
    slow, base_slow = canary.slower_than(bound), baseline.slower_than(bound)
    total, base_total = canary.latency_buckets[-1][1], baseline.latency_buckets[-1][1]
    if slow is None or base_slow is None or total <= 0 or base_total <= 0:
        return None
    z = proportion_excess_z(slow, total, base_slow, base_total, 0.0)
    compared = (
        f"{slow / total:.1%} of the canary's requests slower than {bound * 1000:g} ms against "
        f"{base_slow / base_total:.1%} of the baseline's ({slow:.0f} of {total:.0f} against "
        f"{base_slow:.0f} of {base_total:.0f}; one-sided z {max(min(z, 99), -99):.1f}"
    )
    return z, compared


def p99_over_baseline(p99: float, base: float, limits: Thresholds) -> bool:
    """Whether a canary p99 is over the baseline's by both the ratio and the tolerance (the point comparison)."""
    return p99 > base * limits.max_p99_ratio and p99 - base > limits.p99_tolerance_seconds


def latency_notes(canary: Stats, baseline: Stats, limits: Thresholds) -> list[str]:
    """What the verdict did not count but an operator should see: a slower p99 the histograms did not bear out."""
    p99, base = canary.p99_seconds, baseline.p99_seconds
    if p99 is None or base is None or p99 > limits.max_p99_seconds or baseline.requests < limits.min_requests:
        return []
    if not p99_over_baseline(p99, base, limits):
        return []
    tail = slower_tail(canary, baseline)
    if tail is None or tail[0] >= limits.error_z:
        return []
    return [
        f"p99 {p99 * 1000:.1f} ms against baseline {base * 1000:.1f} ms not counted: {tail[1]} < {limits.error_z:.2f})"
    ]


def judge(canary: Stats, baseline: Stats, limits: Thresholds) -> tuple[str, list[str]]:
    """The verdict on the canary against the baseline, and why (each reason carries its numbers)."""
    reasons: list[str] = []
    if canary.targets == 0:
        return "rollback", ["no canary target is scraped by Prometheus"]
    if not canary.ready:
        reasons.append("a canary host was not scraped or not ready during the whole window")
    if canary.requests < limits.min_requests:
        if limits.on_too_few_requests == "rollback":
            reasons.append(f"too few requests to judge: {canary.requests:.0f} < {limits.min_requests}")
        return ("rollback" if reasons else "promote"), reasons
    expected = limits.expected_share
    total = canary.requests + baseline.requests
    if expected is not None and total > 0 and 100 * canary.requests / total < expected * limits.min_share_fraction:
        reasons.append(
            f"the canary answered {100 * canary.requests / total:.1f}% of the requests, less than "
            f"{limits.min_share_fraction:g} x its share of {expected:g}%: "
            "its hosts failed health checks or left service"
        )
    # A baseline that answered too few requests in the same window gives nothing to compare with: the
    # ceilings still apply, the comparisons cannot, and the policy for too few requests decides.
    compare = baseline.requests >= limits.min_requests
    if not compare and limits.on_too_few_requests == "rollback":
        reasons.append(f"too few baseline requests to compare with: {baseline.requests:.0f} < {limits.min_requests}")
    if canary.server_error_ratio > limits.max_error_ratio:
        reasons.append(f"5xx ratio {canary.server_error_ratio:.2%} > ceiling {limits.max_error_ratio:.2%}")
    elif compare and canary.error_ratio > baseline.error_ratio + limits.max_error_ratio_increase:
        z = excess_z(canary, baseline, limits.max_error_ratio_increase)
        if z >= limits.error_z:
            reasons.append(
                f"error ratio {canary.error_ratio:.2%} > baseline {baseline.error_ratio:.2%}"
                f" + {limits.max_error_ratio_increase:.2%} (one-sided z {min(z, 99):.1f} >= {limits.error_z:.2f}; "
                f"{canary.errors:.0f} of {canary.requests:.0f} against "
                f"{baseline.errors:.0f} of {baseline.requests:.0f})"
            )
    p99 = canary.p99_seconds
    if p99 is not None and p99 > limits.max_p99_seconds:
        reasons.append(f"p99 {p99 * 1000:.1f} ms > ceiling {limits.max_p99_seconds * 1000:.1f} ms")
    elif compare and p99 is not None and baseline.p99_seconds is not None:
        base = baseline.p99_seconds
        if p99_over_baseline(p99, base, limits):
            reason = (
                f"p99 {p99 * 1000:.1f} ms > {limits.max_p99_ratio:g} x baseline {base * 1000:.1f} ms"
                f" ({(p99 - base) * 1000:.1f} ms slower; tolerance {limits.p99_tolerance_seconds * 1000:.0f} ms)"
            )
            # As large as that, and beyond chance: the slow requests are counted where the histograms are.
            tail = slower_tail(canary, baseline)
            if tail is None:
                reasons.append(reason)
            elif tail[0] >= limits.error_z:
                reasons.append(f"{reason}: {tail[1]} >= {limits.error_z:.2f})")
    cpu, base_cpu = canary.cpu_per_request, baseline.cpu_per_request
    costlier = (
        compare
        and cpu is not None
        and base_cpu is not None
        and cpu > base_cpu * limits.max_cpu_ratio
        and cpu - base_cpu > limits.cpu_tolerance_seconds
    )
    if costlier:
        reasons.append(
            f"CPU per request {cpu * 1000:.2f} ms > {limits.max_cpu_ratio:g} x baseline {base_cpu * 1000:.2f} ms: "
            f"the same traffic would need {cpu / base_cpu if base_cpu > 0 else math.inf:.1f} x the hosts"
        )
    mix = limits.max_class_mix_psi
    if compare and mix is not None and canary.classes and baseline.classes:
        shift = psi(baseline.classes, canary.classes)
        if shift > mix:
            reasons.append(f"class mix PSI {shift:.2f} against the baseline > {mix:g}")
    return ("rollback" if reasons else "promote"), reasons


class Prometheus:
    """The few instant queries the gate needs, over Prometheus' HTTP API."""

    def __init__(self, url: str, timeout: float = 10) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        request = urllib.request.Request(
            f"{self.url}/api/v1/query",
            data=urllib.parse.urlencode(params).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                body = json.load(answer)
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:300]
            raise PrometheusError(f"Prometheus refused {promql!r}: HTTP {error.code} {detail}") from error
        except (OSError, ValueError) as error:
            raise PrometheusError(f"cannot ask Prometheus at {self.url}: {error}") from error
        if body.get("status") != "success":
            raise PrometheusError(f"Prometheus refused {promql!r}: {body.get('error', body)}")
        return body["data"]["result"]

    def scalar(self, promql: str, at: float | None = None) -> float | None:
        result = self.query(promql, at)
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) else value


def _matchers(*parts: str) -> str:
    return "{" + ", ".join(part for part in parts if part) + "}"


def observe(
    prom: Prometheus, selector: str, job: str, route: str, window: int, at: float, classes: bool = False
) -> Stats:
    """What the series selected by ``selector`` did in the ``window`` seconds up to ``at``."""
    base = [f'job="{job}"', selector]
    requests = _matchers(*base, f'route=~"{route}"')
    # What a client sees as a failure: every 5xx, and every 4xx but 429 (asked to slow down, not refused).
    errors = _matchers(*base, f'route=~"{route}"', 'status=~"[45].."', 'status!="429"')
    span = f"[{int(window)}s]"
    total = prom.scalar(f"sum(increase(model_service_requests_total{requests}{span}))", at) or 0.0
    failed = prom.scalar(f"sum(increase(model_service_requests_total{errors}{span}))", at) or 0.0
    server = _matchers(*base, f'route=~"{route}"', 'status=~"5.."')
    failed_5xx = prom.scalar(f"sum(increase(model_service_requests_total{server}{span}))", at) or 0.0
    p99 = prom.scalar(
        "histogram_quantile(0.99, sum by (le) "
        f"(increase(model_service_request_duration_seconds_bucket{requests}{span})))",
        at,
    )
    targets = prom.scalar(f"count(up{_matchers(*base)})", at) or 0
    up = prom.scalar(f"min(min_over_time(up{_matchers(*base)}{span}))", at)
    ready = prom.scalar(f"min(min_over_time(model_service_ready{_matchers(*base)}{span}))", at)
    cpu = prom.scalar(f"sum(increase(model_service_request_cpu_seconds_total{requests}{span}))", at)
    histogram = prom.query(f"sum by (le) (increase(model_service_request_duration_seconds_bucket{requests}{span}))", at)
    buckets = sorted((float(r["metric"].get("le", "+Inf")), float(r["value"][1])) for r in histogram)
    per_class = None
    if classes:
        found = prom.query(f"sum by (class) (increase(model_service_predictions_total{_matchers(*base)}{span}))", at)
        per_class = {r["metric"].get("class", ""): float(r["value"][1]) for r in found if float(r["value"][1]) > 0}
    return Stats(
        requests=round(total, 1),
        errors=round(failed, 1),
        server_errors=round(failed_5xx, 1),
        p99_seconds=None if p99 is None else round(p99, 6),
        targets=int(targets),
        ready=up == 1 and ready == 1,
        classes=per_class,
        cpu_seconds=None if cpu is None else round(cpu, 6),
        latency_buckets=[(le, round(count, 1)) for le, count in buckets if not math.isnan(count)] or None,
    )


# A canary that plainly fails its clients is stopped before its window ends (asked at every poll, so held to
# a stricter z than the verdict's), once each side answered EARLY_SHARE of min_requests (at least EARLY_MIN).
EARLY_Z = 3.29  # one-sided, one in 2,000 by chance
EARLY_SHARE = 0.2
EARLY_MIN = 20


def answered(prom: Prometheus, selector: str, job: str, route: str, window: int, at: float) -> Stats:
    """Requests and failed answers alone (the early check's three questions), over ``window`` seconds up to ``at``."""
    base = [f'job="{job}"', selector]
    span = f"[{int(window)}s]"

    def count(*matchers: str) -> float:
        found = prom.scalar(f"sum(increase(model_service_requests_total{_matchers(*base, *matchers)}{span}))", at)
        return round(found or 0.0, 1)

    route_is = f'route=~"{route}"'
    return Stats(
        requests=count(route_is),
        errors=count(route_is, 'status=~"[45].."', 'status!="429"'),
        server_errors=count(route_is, 'status=~"5.."'),
    )


def early_failure(canary: Stats, baseline: Stats, limits: Thresholds) -> list[str]:
    """Reasons to roll a canary back before its window ends, or none: its failed answers already exceed the
    baseline's beyond chance at EARLY_Z, with enough requests on both sides to say so."""
    needed = max(EARLY_MIN, int(limits.min_requests * EARLY_SHARE))
    if canary.requests < needed or baseline.requests < needed:
        return []
    if canary.error_ratio <= baseline.error_ratio + limits.max_error_ratio_increase:
        return []
    z, bar = excess_z(canary, baseline, limits.max_error_ratio_increase), max(EARLY_Z, limits.error_z)
    if z < bar:
        return []
    reasons = []
    if canary.server_error_ratio > limits.max_error_ratio:
        reasons.append(f"5xx ratio {canary.server_error_ratio:.2%} > ceiling {limits.max_error_ratio:.2%}")
    reasons.append(
        f"error ratio {canary.error_ratio:.2%} > baseline {baseline.error_ratio:.2%}"
        f" + {limits.max_error_ratio_increase:.2%} (one-sided z {min(z, 99):.1f} >= {bar:.2f}; "
        f"{canary.errors:.0f} of {canary.requests:.0f} against {baseline.errors:.0f} of {baseline.requests:.0f})"
    )
    return reasons


def _stopped_early(
    seen: Stats, base: Stats, reasons: list[str], limits: Thresholds, elapsed: int, window: int, waited: float
) -> dict[str, Any]:
    summary = (
        f"rollback: canary {seen.requests:.0f} requests, errors {seen.error_ratio:.2%}; baseline "
        f"{base.requests:.0f} requests, errors {base.error_ratio:.2%}; over {elapsed} s of the {window} s window, "
        f"stopped early — {'; '.join(reasons)}"
    )
    return {
        "verdict": "rollback",
        "reasons": reasons,
        "notes": [f"stopped early, after {elapsed} s of the {window} s window"],
        "canary": seen.as_dict(),
        "baseline": base.as_dict(),
        "window": elapsed,
        "waited": waited,
        "thresholds": asdict(limits),
        "summary": summary,
    }


def run_gate(
    prom: Prometheus,
    canary: str,
    baseline: str,
    limits: Thresholds,
    *,
    job: str = "model_service",
    route: str = PREDICTION_ROUTES,
    window: int = 120,
    max_wait: int = 600,
    poll_interval: int = 5,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Watch for ``window`` seconds (longer, up to ``max_wait``, until the canary and the baseline each have
    enough requests in the window: samples that arrive late are waited for), then judge. A canary that
    plainly fails its clients (early_failure) is rolled back at the first poll that shows it."""
    started = clock()
    deadline = started + window
    while clock() + poll_interval < deadline:
        sleep(poll_interval)
        now = clock()
        elapsed = max(1, int(now - started))
        seen = answered(prom, canary, job, route, elapsed, now)
        base = answered(prom, baseline, job, route, elapsed, now)
        reasons = early_failure(seen, base, limits)
        if reasons:
            return _stopped_early(seen, base, reasons, limits, elapsed, window, round(now - started, 1))
    sleep(max(0.0, deadline - clock()))
    classes = limits.max_class_mix_psi is not None
    while True:
        now = clock()
        seen = observe(prom, canary, job, route, window, now, classes)
        base = observe(prom, baseline, job, route, window, now, classes)
        enough = seen.requests >= limits.min_requests and base.requests >= limits.min_requests
        if enough or now - started + poll_interval > max_wait:
            break
        sleep(poll_interval)
    verdict, reasons = judge(seen, base, limits)
    notes = latency_notes(seen, base, limits)
    waited = round(clock() - started, 1)
    p99 = "n/a" if seen.p99_seconds is None else f"{seen.p99_seconds * 1000:.1f} ms"
    base_p99 = "n/a" if base.p99_seconds is None else f"{base.p99_seconds * 1000:.1f} ms"

    def cpu(stats: Stats) -> str:
        per = stats.cpu_per_request
        return "" if per is None else f", CPU {per * 1000:.2f} ms/request"

    summary = (
        f"{verdict}: canary {seen.requests:.0f} requests, errors {seen.error_ratio:.2%}, p99 {p99}{cpu(seen)}, "
        f"{'ready' if seen.ready else 'NOT ready'} ({seen.targets} host(s)); baseline {base.requests:.0f} requests, "
        f"errors {base.error_ratio:.2%}, p99 {base_p99}{cpu(base)} ({base.targets} host(s)); over {window} s"
        + (f" — {'; '.join(reasons)}" if reasons else "")
        + (f" (noted: {'; '.join(notes)})" if notes else "")
    )
    return {
        "verdict": verdict,
        "reasons": reasons,
        "notes": notes,
        "canary": seen.as_dict(),
        "baseline": base.as_dict(),
        "window": window,
        "waited": waited,
        "thresholds": asdict(limits),
        "summary": summary,
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "prometheus_url": {"type": "str", "default": "http://127.0.0.1:9090"},
            "canary": {"type": "str", "required": True},
            "baseline": {"type": "str", "required": True},
            "job": {"type": "str", "default": "model_service"},
            "route": {"type": "str", "default": PREDICTION_ROUTES},
            "window": {"type": "int", "default": 120},
            "min_requests": {"type": "int", "default": 200},
            "max_wait": {"type": "int", "default": 600},
            "poll_interval": {"type": "int", "default": 5},
            "max_error_ratio": {"type": "float", "default": 0.01},
            "max_error_ratio_increase": {"type": "float", "default": 0.005},
            "max_p99_seconds": {"type": "float", "default": 0.5},
            "max_p99_ratio": {"type": "float", "default": 1.5},
            "p99_tolerance_seconds": {"type": "float", "default": 0.01},
            "max_class_mix_psi": {"type": "float"},
            "max_cpu_ratio": {"type": "float", "default": 1.5},
            "cpu_tolerance_seconds": {"type": "float", "default": 0.0005},
            "expected_share": {"type": "float"},
            "error_confidence": {"type": "float", "default": 0.95},
            "min_share_fraction": {"type": "float", "default": 0.5},
            "on_too_few_requests": {"type": "str", "default": "rollback", "choices": ["rollback", "promote"]},
            "timeout": {"type": "int", "default": 10},
        },
        supports_check_mode=True,
    )
    p = module.params
    if p["window"] < 1 or p["max_wait"] < p["window"]:
        module.fail_json(
            msg=f"window must be at least 1 s and max_wait at least window (got {p['window']}, {p['max_wait']})"
        )
    if not 0.5 <= p["error_confidence"] < 1:
        module.fail_json(msg=f"error_confidence must be at least 0.5 and below 1 (got {p['error_confidence']})")
    limits = Thresholds(
        min_requests=p["min_requests"],
        max_error_ratio=p["max_error_ratio"],
        max_error_ratio_increase=p["max_error_ratio_increase"],
        max_p99_seconds=p["max_p99_seconds"],
        max_p99_ratio=p["max_p99_ratio"],
        p99_tolerance_seconds=p["p99_tolerance_seconds"],
        on_too_few_requests=p["on_too_few_requests"],
        max_class_mix_psi=p["max_class_mix_psi"],
        max_cpu_ratio=p["max_cpu_ratio"],
        cpu_tolerance_seconds=p["cpu_tolerance_seconds"],
        expected_share=p["expected_share"],
        error_z=z_of(p["error_confidence"]),
        min_share_fraction=p["min_share_fraction"],
    )
    try:
        result = run_gate(
            Prometheus(p["prometheus_url"], p["timeout"]),
            p["canary"],
            p["baseline"],
            limits,
            job=p["job"],
            route=p["route"],
            window=p["window"],
            max_wait=p["max_wait"],
            poll_interval=max(p["poll_interval"], 1),
        )
    except PrometheusError as error:
        module.fail_json(msg=f"The canary could not be judged: {error}")
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
