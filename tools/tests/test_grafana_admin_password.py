"""The grafana_admin_password module against Grafana's database as its first start leaves it."""

from __future__ import annotations

import importlib.util
import sqlite3
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


module = _load("grafana_admin_password", ROOT / "plugins/modules/grafana_admin_password.py")
first_start = _load("first_start_db", ROOT / "molecule/grafana/files/first_start_db.py")


def stored(database: Path, login: str = "admin") -> tuple[str, str]:
    with sqlite3.connect(database) as db:
        row = db.execute("SELECT password, salt FROM user WHERE login = ?", (login,)).fetchone()
    db.close()
    return row


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "grafana.db"
    first_start.create(str(path), "admin", "the-first-password")
    return path


def test_the_hash_is_grafanas() -> None:
    # A hash Grafana wrote for admin/admin (pkg/util/encoding.go: PBKDF2-HMAC-SHA256, 10,000 rounds, 50 bytes).
    assert module.encode("admin", "F3FAxVm33R") == (
        "59acf18b94d7eb0694c61e60ce44c110c7a683ac6a8f09580d626f90f4a242000746579358d77dd9e570e83fa24faa88a8a6"
    )


def test_a_password_changed_in_the_vault_reaches_grafana(database: Path) -> None:
    _, salt = stored(database)
    assert module.reconcile(database, "admin", "a-new-vault-password", check=False) == "changed"
    assert stored(database) == (module.encode("a-new-vault-password", salt), salt), "the user's salt is kept"
    assert module.reconcile(database, "admin", "a-new-vault-password", check=False) == "current"


def test_check_mode_reports_the_change_and_writes_nothing(database: Path) -> None:
    before = stored(database)
    assert module.reconcile(database, "admin", "a-new-vault-password", check=True) == "changed"
    assert stored(database) == before
    assert module.reconcile(database, "admin", "the-first-password", check=True) == "current"


def test_the_same_password_is_left_alone(database: Path) -> None:
    before = database.stat().st_mtime_ns
    assert module.reconcile(database, "admin", "the-first-password", check=False) == "current"
    assert database.stat().st_mtime_ns == before


def test_without_a_database_there_is_nothing_to_change(tmp_path: Path) -> None:
    assert module.reconcile(tmp_path / "grafana.db", "admin", "pw", check=False) == "absent"
    assert not (tmp_path / "grafana.db").exists()


def test_a_user_without_a_salt_gets_one(database: Path) -> None:
    with sqlite3.connect(database) as db:
        db.execute("UPDATE user SET salt = '' WHERE login = 'admin'")
    db.close()
    assert module.reconcile(database, "admin", "a-new-vault-password", check=False) == "changed"
    password, salt = stored(database)
    assert len(salt) == 10
    assert password == module.encode("a-new-vault-password", salt)


@pytest.mark.parametrize(
    ("login", "message"),
    [("ops", "has no user 'ops': was admin_user renamed"), ("admin", "is not a Grafana database")],
)
def test_what_cannot_be_changed_safely_is_refused(tmp_path: Path, database: Path, login: str, message: str) -> None:
    target = database
    if message.startswith("is not"):
        target = tmp_path / "other.db"
        sqlite3.connect(target).close()
    with pytest.raises(module.Refused, match=message):
        module.reconcile(target, login, "pw", check=False)
