"""`live-relay keys create --project P`: make an API key, show it once, print the line to store.

The relay never stores a key, only its hash: the key printed here cannot be shown again.
"""

from __future__ import annotations

import argparse
import json
import re

from app.auth.keys import generate_api_key, hash_api_key
from app.auth.projects_file import PROJECT_NAME_PATTERN


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="keys_action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="make a new API key for a project")
    create.add_argument("--project", required=True, help="the project the key belongs to")


def run(args: argparse.Namespace) -> int:
    project: str = args.project
    if not re.match(PROJECT_NAME_PATTERN, project):
        print(f"invalid project name {project!r}: use letters, digits, '.', '_' or '-'")
        return 2
    key = generate_api_key()
    print(f"API key for project {project!r} (shown once: store it as a secret now):")
    print(key)
    print()
    print("Add its hash to the project in RELAY_PROJECTS_FILE, then reload or restart the relay:")
    print(f"[projects.{json.dumps(project) if '.' in project else project}]")
    print(f"api_keys = [{json.dumps(hash_api_key(key))}]")
    return 0
