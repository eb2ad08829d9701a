"""Check that every role's meta/argument_specs.yml documents exactly its public defaults.

For each role below ROLES_DIR: every variable in defaults/main.yml must be an option of the
`main` entry point and the reverse, and where the spec states a default it must equal the value
in defaults/main.yml. Exit status 1 lists every mismatch; 0 means all roles agree.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data or {}


def check_role(role: Path) -> list[str]:
    """Return the mismatches of one role, as sentences naming the file to change."""
    defaults = _load(role / "defaults" / "main.yml")
    specs_file = role / "meta" / "argument_specs.yml"
    if not specs_file.is_file():
        return [f"{role.name}: meta/argument_specs.yml is missing"]
    entry = _load(specs_file).get("argument_specs", {}).get("main")
    if entry is None:
        return [f"{role.name}: meta/argument_specs.yml has no 'main' entry point"]
    options: dict[str, Any] = entry.get("options") or {}
    problems: list[str] = []
    for name in sorted(set(defaults) - set(options)):
        problems.append(f"{role.name}: default '{name}' is not documented in meta/argument_specs.yml")
    for name in sorted(set(options) - set(defaults)):
        spec = options[name] or {}
        if not spec.get("required", False):
            problems.append(f"{role.name}: option '{name}' is neither required nor set in defaults/main.yml")
    for name in sorted(set(options) & set(defaults)):
        spec = options[name] or {}
        if "default" in spec and spec["default"] != defaults[name]:
            problems.append(
                f"{role.name}: '{name}' defaults to {defaults[name]!r} in defaults/main.yml "
                f"but {spec['default']!r} in meta/argument_specs.yml"
            )
        if not str(name).startswith(f"{role.name}_"):
            problems.append(f"{role.name}: public variable '{name}' lacks the role prefix '{role.name}_'")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roles_dir", type=Path, nargs="?", default=Path("roles"))
    args = parser.parse_args(argv)
    roles = sorted(p for p in args.roles_dir.iterdir() if (p / "tasks").is_dir())
    if not roles:
        print(f"no roles found below {args.roles_dir}", file=sys.stderr)
        return 1
    problems = [p for role in roles for p in check_role(role)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"argument_specs agree with defaults in {len(roles)} roles")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
