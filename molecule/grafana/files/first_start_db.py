#!/usr/bin/env python3
"""Grafana's database as its first start leaves it: the ``user`` table (Grafana's own SQLite schema) with
the admin user whose password was grafana.ini's then. Usage: first_start_db.py DATABASE LOGIN PASSWORD.

Grafana itself cannot be installed where the tests run; this is the state its first start writes, so that
what the grafana role does to it on a later run is checked on a real database file.
"""

from __future__ import annotations

import hashlib
import sqlite3
import sys

USER_TABLE = """
CREATE TABLE `user` (
`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL
, `version` INTEGER NOT NULL
, `login` TEXT NOT NULL
, `email` TEXT NOT NULL
, `name` TEXT NULL
, `password` TEXT NULL
, `salt` TEXT NULL
, `rands` TEXT NULL
, `company` TEXT NULL
, `org_id` INTEGER NOT NULL
, `is_admin` INTEGER NOT NULL
, `email_verified` INTEGER NULL
, `theme` TEXT NULL
, `created` DATETIME NOT NULL
, `updated` DATETIME NOT NULL
, `help_flags1` INTEGER NOT NULL DEFAULT 0
, `last_seen_at` DATETIME NULL
, `is_disabled` INTEGER NOT NULL DEFAULT 0
, `is_service_account` INTEGER DEFAULT 0
, `uid` TEXT NULL
)
"""
SALT = "F3FAxVm33R"


def create(database: str, login: str, password: str) -> None:
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), SALT.encode(), 10_000, 50).hex()
    with sqlite3.connect(database) as db:
        db.execute(USER_TABLE)
        db.execute(
            "INSERT INTO `user` (version, login, email, name, password, salt, rands, org_id, is_admin,"
            " created, updated, uid) VALUES (0, ?, 'admin@localhost', '', ?, ?, 'rands', 1, 1,"
            " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 'admin-uid')",
            (login, digest, SALT),
        )
    db.close()


if __name__ == "__main__":
    create(*sys.argv[1:4])
