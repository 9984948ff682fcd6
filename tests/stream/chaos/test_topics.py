"""Table keys as the scenarios read them from the changelogs."""

from __future__ import annotations

import json

from stream.chaos.topics import changelog_topic, interactions_topic, table_key
from stream.config import Settings


def test_table_keys_are_json_strings_and_position_markers_are_skipped() -> None:
    assert table_key(json.dumps("42").encode()) == "42"
    assert table_key(json.dumps("\u202eodd").encode()) == "\u202eodd"
    assert table_key(json.dumps("\x00statistics-intent:0").encode()) is None
    assert table_key(b"\x00raw marker") is None
    assert table_key(None) is None
    assert table_key(b"not json") == "not json"


def test_internal_topic_names_follow_the_app_id() -> None:
    settings = Settings(app_id="app")
    assert changelog_topic(settings, "user-profiles") == "app-user-profiles-changelog"
    assert interactions_topic(settings) == "app-item-interactions"
