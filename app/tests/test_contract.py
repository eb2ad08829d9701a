"""contract.py against the service: every rule enforced and documented, every documented constraint a rule."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import model_service
import pytest
from model_service import contract as c
from model_service.contract import Rule

INFER = "/v2/models/demo-classifier/infer"
CONSTRAINTS = {"required", "additionalProperties", "minItems", "maxItems", "minimum", "maximum", "enum"}
CONSTRAINTS |= {"x-max-rows", "x-max-body-bytes"}
REQUEST_SCHEMAS = ("Feature", "Instance", "Batch", "InferenceRequest", "RequestInput", "RequestOutput")


def tensor(rows: int = 1, **changes: Any) -> dict[str, Any]:
    return {"name": "input-0", "datatype": "FP32", "shape": [rows, 36], "data": [0.5] * (36 * rows), **changes}


def v2(*inputs: dict[str, Any], **extra: Any) -> bytes:
    return json.dumps({"inputs": list(inputs), **extra}).encode()


def violations(instance: dict[str, float]) -> dict[Rule, tuple[str, bytes, dict[str, str]]]:
    """One request breaking each rule: (path, body, headers)."""
    js = {"Content-Type": "application/json"}

    def predict(body: Any, **headers: str) -> tuple[str, bytes, dict[str, str]]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return "/predict", data, headers or js

    binary_head = json.dumps({"inputs": [tensor(data=None, parameters={"binary_data_size": 100})]}).encode()
    return {
        c.EMPTY_BODY: predict(b""),
        c.INVALID_JSON: predict(b"{nope"),
        c.MEDIA_TYPE: predict(instance, **{"Content-Type": "text/plain"}),
        c.BODY_TOO_LARGE: predict(b"{" + b" " * 300_000 + b"}"),
        c.NOT_AN_OBJECT: predict([1]),
        c.BATCH_KEYS: predict({"instances": [instance], "more": 1}),
        c.INSTANCES_NOT_ARRAY: predict({"instances": {}}),
        c.EMPTY_BATCH: predict({"instances": []}),
        c.BATCH_TOO_LARGE: predict({"instances": [instance] * 51}),
        c.INSTANCE_NOT_AN_OBJECT: predict({"instances": [1]}),
        c.FEATURES: predict({}),
        c.NOT_A_NUMBER: predict({**instance, "feat4": "4"}),
        c.NOT_FINITE: predict({**instance, "feat4": 1e300}),
        c.V2_NOT_FOUND: ("/v2/models/other/infer", v2(tensor()), {}),
        c.V2_CONTENT_ENCODING: (INFER, v2(tensor()), {"Content-Encoding": "gzip"}),
        c.V2_HEADER_LENGTH: (INFER, v2(tensor()), {c.V2_BINARY_HEADER: "99999"}),
        c.V2_INVALID_JSON: (INFER, b"{nope", {}),
        c.V2_NOT_AN_OBJECT: (INFER, b"[]", {}),
        c.V2_INPUTS: (INFER, v2(), {}),
        c.V2_INPUT_NAME: (INFER, v2(tensor(name="x")), {}),
        c.V2_DATATYPE: (INFER, v2(tensor(datatype="INT8")), {}),
        c.V2_SHAPE: (INFER, v2(tensor(shape=[1, 35])), {}),
        c.V2_TOO_MANY_ROWS: (INFER, v2(tensor(51)), {}),
        c.V2_DATA: (INFER, v2(tensor(data=[0.5] * 35)), {}),
        c.V2_BINARY_SIZE: (INFER, binary_head + bytes(100), {c.V2_BINARY_HEADER: str(len(binary_head))}),
        c.V2_NOT_FINITE: (INFER, v2(tensor(data=[1e300] * 36)), {}),
        c.V2_OUTPUTS_INVALID: (INFER, v2(tensor(), outputs=[{"name": "nope"}]), {}),
        c.V2_OUTPUTS_DUPLICATE: (INFER, v2(tensor(), outputs=[{"name": "probabilities"}] * 2), {}),
    }


def resolve(document: dict[str, Any], pointer: str) -> Any:
    node: Any = document
    for part in pointer.lstrip("/").split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def constraints(node: Any, pointer: str) -> list[str]:
    """Pointers to every constraint keyword under node, not following $ref."""
    if isinstance(node, list):
        return [p for i, item in enumerate(node) for p in constraints(item, f"{pointer}/{i}")]
    if not isinstance(node, dict):
        return []
    found = []
    for key, value in node.items():
        escaped = key.replace("~", "~0").replace("/", "~1")
        if key in CONSTRAINTS and not (key == "required" and value is False):
            found.append(f"{pointer}/{escaped}")
        if key != "properties" or not isinstance(value, dict):
            found += constraints(value, f"{pointer}/{escaped}")
        else:
            found += [p for name, sub in value.items() for p in constraints(sub, f"{pointer}/properties/{name}")]
    return found


@pytest.fixture
def document(client) -> dict[str, Any]:
    return client.get("/openapi.json").get_json()


def test_every_rule_has_a_violation_to_send(instance) -> None:
    rules = {value for value in vars(c).values() if isinstance(value, Rule)}
    assert rules == set(c.PREDICT_RULES) | set(c.V2_RULES)
    assert set(violations(instance)) == rules


@pytest.mark.parametrize("rule", [*c.PREDICT_RULES, *c.V2_RULES], ids=lambda rule: rule.code)
def test_every_rule_is_enforced_and_documented(client, document, instance, rule) -> None:
    path, body, headers = violations(instance)[rule]
    response = client.post(path, data=body, headers=headers)
    assert response.status_code == rule.status, response.get_data(as_text=True)
    answer = response.get_json()
    if path.startswith("/v2/"):
        assert set(answer) == {"error"}
        assert rule.matches(answer["error"]), answer
    else:
        assert answer["error"] == rule.code
        assert rule.matches(answer["detail"]), answer
    for pointer in rule.documented_at:
        resolve(document, pointer)  # KeyError: documented nowhere


def test_every_documented_request_constraint_is_a_rule(document) -> None:
    documented = [
        p
        for name in REQUEST_SCHEMAS
        for p in constraints(resolve(document, f"/components/schemas/{name}"), f"/components/schemas/{name}")
    ]
    for path, operations in document["paths"].items():
        post = operations.get("post")
        if post is not None:
            escaped = path.replace("~", "~0").replace("/", "~1")
            for i, parameter in enumerate(post.get("parameters", [])):
                documented += constraints(parameter.get("schema", {}), f"/paths/{escaped}/post/parameters/{i}/schema")
            documented += constraints(post.get("requestBody", {}), f"/paths/{escaped}/post/requestBody")
    assert documented
    covered = {pointer for rule in (*c.PREDICT_RULES, *c.V2_RULES) for pointer in rule.documented_at}
    uncovered = [p for p in documented if not any(p == q or p.startswith(q + "/") for q in covered)]
    assert uncovered == []


@pytest.mark.parametrize("module", ["validation.py", "v2.py"])
def test_request_checks_raise_only_contract_rules(module) -> None:
    tree = ast.parse((Path(model_service.__file__).parent / module).read_text())
    direct = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "ApiError"
    ]
    assert direct == []


def test_fast_reader_accepts_and_refuses_what_the_careful_one_does(metadata, instance) -> None:
    import numpy as np
    import orjson
    from model_service.errors import ApiError
    from model_service.validation import RowReader, parse_json

    reader = RowReader(metadata["features"])
    bodies = [
        instance,
        {k: int(v) for k, v in instance.items()},
        {"instances": [instance] * 3},
        {"instances": []},
        {"instances": [instance] * 51},
        {"instances": [instance], "more": 1},
        {**instance, "feat3": True},
        {**instance, "feat3": "3"},
        {**instance, "extra": 1},
        {k: v for k, v in instance.items() if k != "feat2"},
        {**instance, "feat3": 1e300},
        {**instance, "feat3": '"instances"'},
        [instance],
    ]
    raw = [orjson.dumps(body) for body in bodies] + [b"", b"{nope", b'{"instances": [1]}']
    for body in raw:
        try:
            careful: object = reader.matrix(parse_json(body), 50)
        except ApiError as error:
            careful = (error.status, error.code, error.detail)
        try:
            fast: object = reader.read(body, 50)
        except ApiError as error:
            fast = (error.status, error.code, error.detail)
        if isinstance(careful, tuple) and isinstance(careful[0], np.ndarray):
            assert np.array_equal(fast[0], careful[0]), body
            assert fast[1] == careful[1], body
        else:
            assert fast == careful, body
