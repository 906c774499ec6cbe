"""JSON Schemas of what the pipeline takes and what it announces, generated from its pydantic models.

    python -m tools.schemas           write schemas/ (make schemas)
    python -m tools.schemas --check   exit 1 naming every file that differs from the models (make lint)

The release file's and the execution input's schemas describe what a seller may write
(pydantic's validation mode). Each event's schema describes the detail the pipeline sends for
one detail-type of ``mlpublish.events.DETAIL_TYPES`` (serialization mode: every field is sent).
The checked-in files are the contract: tests validate events/ and the events the e2e runs
capture against them, not against the models.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, Literal

from jsonschema import Draft202012Validator
from pydantic import BaseModel

from mlpublish.events import DETAIL_TYPES
from mlpublish.release import ReleaseSpec
from mlpublish.state import StartInput

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"
RELEASE_FILE = "release-file.schema.json"
EXECUTION_INPUT = "execution-input.schema.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def event_file(detail_type: str) -> str:
    """``Release Failed`` -> ``events/release-failed.schema.json``."""
    return f"events/{re.sub(r'[^a-z0-9]+', '-', detail_type.lower()).strip('-')}.schema.json"


def _schema(
    model: type[BaseModel], mode: Literal["validation", "serialization"], title: str, description: str
) -> dict[str, Any]:
    generated = model.model_json_schema(mode=mode)
    generated.pop("title", None)
    generated.pop("description", None)
    return {"$schema": DIALECT, "title": title, "description": description, **generated}


def generated() -> dict[str, dict[str, Any]]:
    """Every schema, by its path under schemas/."""
    documents = {
        RELEASE_FILE: _schema(
            ReleaseSpec,
            "validation",
            "mlpublish release file",
            "One product version to publish on AWS Marketplace (YAML or JSON), uploaded to the pipeline "
            "bucket's releases/ or started by hand. The pipeline also checks what a schema cannot say "
            "(e.g. unique container names, one ECR registry); `python -m sandbox check` runs every check.",
        ),
        EXECUTION_INPUT: _schema(
            StartInput,
            "validation",
            "mlpublish execution input",
            "The state machine's input for a manual start (aws stepfunctions start-execution --input): "
            "a release file's s3:// URI, or the release inline.",
        ),
    }
    for detail_type, model in DETAIL_TYPES.items():
        summary = (model.__doc__ or "").strip()
        documents[event_file(detail_type)] = _schema(
            model,
            "serialization",
            detail_type,
            f"{summary} The detail of the EventBridge event with detail-type {detail_type!r}, "
            "put on the stack's event bus with the stack's EventSource as its source.",
        )
    return documents


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def stale(directory: Path = SCHEMAS) -> list[str]:
    """Files under ``directory`` that differ from the models, are missing, or no model makes."""
    expected = {name: render(schema) for name, schema in generated().items()}
    present = {path.relative_to(directory).as_posix() for path in directory.rglob("*.json")}
    problems = [f"{name}: no model makes it (remove it)" for name in sorted(present - expected.keys())]
    for name, text in sorted(expected.items()):
        path = directory / name
        if not path.exists():
            problems.append(f"{name}: missing")
        elif path.read_text() != text:
            problems.append(f"{name}: differs from the models")
    return problems


def write(directory: Path = SCHEMAS) -> list[str]:
    """Write every schema; remove schemas no model makes. Returns the files written."""
    expected = generated()
    for path in directory.rglob("*.json"):
        if path.relative_to(directory).as_posix() not in expected:
            path.unlink()
    written = []
    for name, schema in expected.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        text = render(schema)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(name)
    return written


# --- validating documents against the checked-in schemas (contract tests) --------------------


@cache
def validator(name: str) -> Draft202012Validator:
    """A validator of the checked-in schema ``name`` (a path under schemas/)."""
    schema = json.loads((SCHEMAS / name).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def problems(name: str, document: Any) -> list[str]:
    """Every way ``document`` breaks the schema ``name``, each with its path; empty when it conforms."""
    return [
        f"{'.'.join(str(part) for part in error.absolute_path) or '(top level)'}: {error.message}"
        for error in sorted(validator(name).iter_errors(document), key=lambda error: list(error.absolute_path))
    ]


def event_problems(event: dict[str, Any]) -> list[str]:
    """Every way an EventBridge event of the pipeline breaks its detail-type's schema."""
    detail_type = str(event.get("detail-type"))
    if detail_type not in DETAIL_TYPES:
        return [f"detail-type {detail_type!r} has no schema: add its model to mlpublish.events.DETAIL_TYPES"]
    return [f"{detail_type}: {problem}" for problem in problems(event_file(detail_type), event.get("detail"))]


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.schemas", description="Write or check the JSON Schemas in schemas/."
    )
    parser.add_argument("--check", action="store_true", help="fail when schemas/ differs from the models")
    args = parser.parse_args(argv)
    if args.check:
        found = stale()
        for problem in found:
            out(f"schemas/{problem}")
        if found:
            out("The JSON Schemas are stale: run `make schemas` and commit schemas/.")
        return 1 if found else 0
    for name in write():
        out(f"wrote schemas/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
