"""The release record read from the model bucket in one call (plugins/modules/release_records.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import boto3
import pytest
from moto import mock_aws

ROOT = Path(__file__).resolve().parents[2]


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("release_records", ROOT / "plugins/modules/release_records.py")
    assert spec is not None
    assert spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


records = _module()


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="models")
        yield client


def put(client, key: str, body: dict | str) -> None:
    client.put_object(Bucket="models", Key=key, Body=body if isinstance(body, str) else json.dumps(body))


def test_the_newest_entries_are_read_oldest_first_and_nothing_else(s3) -> None:
    for n in (3, 1, 2, 4):  # written out of order: the keys' time orders them
        put(s3, f"releases/2026120{n}T000000-img.json", {"n": n})
    put(s3, "releases/notes.txt", "not an entry")
    put(s3, "releases/.json", "{}")
    put(s3, "lease.json", {"holder": "x"})
    keys, read = records.read_records(s3, "models", "releases/", 3)
    assert [entry["n"] for entry in read] == [2, 3, 4]
    assert keys == [f"releases/2026120{n}T000000-img.json" for n in (2, 3, 4)]
    _, every = records.read_records(s3, "models", "releases/", 0)
    assert [entry["n"] for entry in every] == [1, 2, 3, 4]


def test_a_record_longer_than_a_listing_page_is_read_to_its_end(s3) -> None:
    for n in range(7):
        put(s3, f"releases/{n:04d}.json", {"n": n})
    keys, read = records.read_records(s3, "models", "releases/", 5, page_size=2)
    assert [entry["n"] for entry in read] == [2, 3, 4, 5, 6]
    assert len(keys) == 5


def test_a_bucket_that_does_not_exist_yet_holds_no_record(s3) -> None:
    assert records.read_records(s3, "not-made-yet", "releases/", 50) == ([], [])


def test_an_entry_that_is_not_json_is_an_error_not_a_silent_gap(s3) -> None:
    put(s3, "releases/0001.json", "{not json")
    with pytest.raises(json.JSONDecodeError, match="Expecting property name"):
        records.read_records(s3, "models", "releases/", 50)
