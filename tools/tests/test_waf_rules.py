"""The web ACL's rules (roles/aws_alb/templates/waf_rules.yml.j2) as the role renders them: the service's
body limit at the WAF, the common rule set's 8 KB body rule kept everywhere but on the prediction routes."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT / "plugins/filter"))
from aws import greater_than_regex  # noqa: E402

TEMPLATE = ROOT / "roles/aws_alb/templates/waf_rules.yml.j2"


def render(**overrides: object) -> dict[str, Any]:
    defaults = yaml.safe_load((ROOT / "roles/aws_alb/defaults/main.yml").read_text())
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["modelfleet.fleet.greater_than_regex"] = greater_than_regex
    env.filters["to_json"] = json.dumps
    text = env.from_string(TEMPLATE.read_text()).render(**{**defaults, **overrides})
    return {rule["name"]: rule for rule in yaml.safe_load(text)}


@pytest.mark.parametrize("limit", [0, 1, 8, 9, 10, 99, 100, 8191, 8192, 65536, 1048576, 999999])
def test_the_limit_pattern_matches_exactly_the_numbers_above_it(limit: int) -> None:
    pattern = re.compile(greater_than_regex(limit))
    for value in [*range(0, min(limit, 3000) + 3000), *range(max(limit - 3000, 0), limit + 3000), 10**12]:
        assert bool(pattern.match(str(value))) == (value > limit), (limit, value)
    assert pattern.match("000" + str(limit + 1))
    assert not pattern.match("000" + str(limit))
    for junk in ("", "-1", "1e9", " 9999999999", "abc"):
        assert not pattern.match(junk), junk
    assert pattern.groups == 0, "AWS WAF refuses capturing groups"


def test_a_content_length_over_the_service_limit_gets_the_hosts_413() -> None:
    rules = render(aws_alb_name="mf")
    rule = rules["body-over-service-limit"]
    assert rule["action"]["block"]["custom_response"] == {
        "response_code": 413,
        "custom_response_body_key": "payload_too_large",
    }
    statement = rule["statement"]["regex_match_statement"]
    assert statement["field_to_match"] == {"single_header": {"name": "content-length"}}
    pattern = re.compile(statement["regex_string"])
    assert pattern.match("1048577")
    assert not pattern.match("1048576")
    assert not pattern.match("8193"), "a batch over 8 KB and under the limit passes"
    assert len(statement["regex_string"]) <= 512, "AWS WAF takes regular expressions of up to 512 characters"
    assert rule["priority"] < rules["AWSManagedRulesCommonRuleSet"]["priority"]
    assert "body-over-service-limit" not in render(aws_alb_name="mf", aws_alb_waf_body_limit=0)


def test_large_bodies_pass_on_the_prediction_routes_only() -> None:
    rules = render(aws_alb_name="mf")
    group = rules["AWSManagedRulesCommonRuleSet"]["statement"]["managed_rule_group_statement"]
    assert group["rule_action_overrides"] == [{"name": "SizeRestrictions_BODY", "action_to_use": {"count": {}}}]
    rule = rules["large-body-outside-prediction-routes"]
    # After the group whose label it reads.
    assert rule["priority"] > rules["AWSManagedRulesCommonRuleSet"]["priority"]
    label, outside = rule["statement"]["and_statement"]["statements"]
    assert label["label_match_statement"] == {
        "scope": "LABEL",
        "key": "awswaf:managed:aws:core-rule-set:SizeRestrictions_Body",
    }
    routes = re.compile(outside["not_statement"]["statement"]["regex_match_statement"]["regex_string"])
    assert routes.groups == 0, "AWS WAF refuses capturing groups"
    # A user's pattern with backslashes renders as valid YAML too.
    dotted = render(aws_alb_name="mf", aws_alb_waf_large_body_paths=r"^/predict\.json$")
    statement = dotted["large-body-outside-prediction-routes"]["statement"]["and_statement"]["statements"][1]
    assert statement["not_statement"]["statement"]["regex_match_statement"]["regex_string"] == r"^/predict\.json$"
    for path in ("/predict", "/v2/models/demo/infer", "/v2/models/demo/versions/2/infer"):
        assert routes.match(path), path
    for path in ("/", "/ready", "/predict/x", "/v2/models/demo", "/v2/models/a/b/infer", "/xpredict"):
        assert not routes.match(path), path
    # Counted nowhere, the group blocks on its own: no rule of the project's needed.
    blocking = render(aws_alb_name="mf", aws_alb_waf_count_rules={})
    assert "large-body-outside-prediction-routes" not in blocking
    priorities = [rule["priority"] for rule in render(aws_alb_name="mf").values()]
    assert len(priorities) == len(set(priorities))


def test_the_rate_limit_answers_429_with_json() -> None:
    rule = render(aws_alb_name="mf")["rate-limit-per-ip"]
    assert rule["action"]["block"]["custom_response"]["response_code"] == 429
    assert rule["statement"]["rate_based_statement"]["evaluation_window_sec"] == 300


def test_every_response_body_a_rule_names_is_defined() -> None:
    tasks = (ROOT / "roles/aws_alb/tasks/main.yml").read_text()
    for rule in render(aws_alb_name="mf").values():
        key = rule.get("action", {}).get("block", {}).get("custom_response", {}).get("custom_response_body_key")
        if key:
            assert f"\n          {key}:\n" in tasks, key
