"""JSON Schemas of the five message contracts, generated from their Structs.

Checked in under ``schemas/`` (``streamrank schemas``) so that producers and consumers in
other languages can validate against them; a test fails when a file is stale.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from stream.core.contracts import EventMessage, ItemMessage, RerankRequestMessage
from stream.core.outputs import DeadLetter, Recommendation

# Title, description, and the rule a Struct cannot state, of each contract's schema.
_ITEM_RULE = {
    "if": {"properties": {"deleted": {"const": True}}, "required": ["deleted"]},
    "else": {"required": ["title"], "properties": {"title": {"type": "string", "pattern": "\\S"}}},
}
CONTRACTS: dict[str, Any] = {
    "events": EventMessage,
    "items": Annotated[ItemMessage, Meta(extra_json_schema=_ITEM_RULE)],
    "rerank-requests": RerankRequestMessage,
    "recommendations": Recommendation,
    "dead-letters": DeadLetter,
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema (draft 2020-12) of each contract, by topic name."""
    return {
        topic: {"$schema": "https://json-schema.org/draft/2020-12/schema", **msgspec.json.schema(contract)}
        for topic, contract in CONTRACTS.items()
    }


def schema_files() -> dict[str, str]:
    """The checked-in schema files (``schemas/<topic>.schema.json``): name and text."""
    return {
        f"{topic}.schema.json": json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
        for topic, schema in json_schemas().items()
    }
