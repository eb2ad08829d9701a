#!/usr/bin/python
"""Ansible module: make Grafana's admin password the one given, in Grafana's own database."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: grafana_admin_password
short_description: Make a Grafana user's password the given one, on every run
description:
  - >-
    Grafana reads C(admin_password) from grafana.ini only at its first start, when it creates the admin
    user; a password changed in the vault afterwards never reaches it. This compares the password stored
    for O(login) in Grafana's database (PBKDF2-HMAC-SHA256, 10,000 rounds, 50 bytes, the user's salt: what
    Grafana checks a login against) with O(password), and writes the new hash with the user's salt when they
    differ, as C(grafana cli admin reset-admin-password) does.
  - Without the database (Grafana never started) there is nothing to change; grafana.ini's password is the
    one Grafana will take at its first start.
  - Check mode reports the change without writing it; the password never appears in the output.
version_added: "0.7.0"
author: modelfleet
options:
  database:
    description: Grafana's SQLite database.
    type: path
    default: /var/lib/grafana/grafana.db
  login:
    description: The user's login (Grafana's admin_user).
    type: str
    default: admin
  password:
    description: The password the user must have.
    type: str
    required: true
    no_log: true
  required:
    description: >-
      Fail when the database does not exist (Grafana runs, so it should): a O(database) that is not where
      Grafana keeps it would otherwise leave the password unchanged without a word.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Make the admin password the vault's
  modelfleet.fleet.grafana_admin_password:
    login: admin
    password: "{{ vault_grafana_admin_password }}"
"""

RETURN = r"""
state:
  description: C(absent) (no database yet), C(current) (already the password) or C(changed).
  returned: always
  type: str
"""

import contextlib
import hashlib
import secrets
import sqlite3
import string
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

ROUNDS = 10_000
LENGTH = 50
SALT_ALPHABET = string.ascii_letters + string.digits


def encode(password: str, salt: str) -> str:
    """Grafana's password hash (pkg/util/encoding.go, EncodePassword)."""
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), ROUNDS, LENGTH).hex()


class Refused(Exception):
    """The database is not one this module can change safely; the message says why."""


def reconcile(database: Path, login: str, password: str, check: bool) -> str:
    """Make ``login``'s stored password ``password``: ``absent``, ``current`` or ``changed``."""
    if not database.exists():
        return "absent"
    db = sqlite3.connect(f"file:{database}?mode={'ro' if check else 'rw'}", uri=True, timeout=30)
    with contextlib.closing(db), db:  # one transaction, committed when it ends without an error
        try:
            rows = db.execute('SELECT id, password, salt FROM "user" WHERE login = ?', (login,)).fetchall()
        except sqlite3.Error as error:
            raise Refused(f"{database} is not a Grafana database this module knows: {error}") from error
        if len(rows) != 1:
            raise Refused(f"{database} has no user {login!r}: was admin_user renamed after Grafana's first start?")
        user, stored, salt = rows[0]
        if salt and stored == encode(password, salt):
            return "current"
        if not check:
            salt = salt or "".join(secrets.choice(SALT_ALPHABET) for _ in range(10))
            db.execute(
                'UPDATE "user" SET password = ?, salt = ?, updated = CURRENT_TIMESTAMP WHERE id = ?',
                (encode(password, salt), salt, user),
            )
    return "changed"


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "database": {"type": "path", "default": "/var/lib/grafana/grafana.db"},
            "login": {"type": "str", "default": "admin"},
            "password": {"type": "str", "required": True, "no_log": True},
            "required": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        state = reconcile(Path(params["database"]), params["login"], params["password"], module.check_mode)
    except Refused as refused:
        module.fail_json(msg=str(refused))
    if state == "absent" and params["required"]:
        module.fail_json(
            msg=f"no Grafana database at {params['database']}: grafana_database must be where Grafana keeps it"
        )
    module.exit_json(changed=state == "changed", state=state)


if __name__ == "__main__":
    main()
