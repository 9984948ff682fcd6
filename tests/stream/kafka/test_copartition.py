"""The start-up check that events, rerank-requests and the profiles' changelog line up."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import faust
import pytest

from stream.config import Settings
from stream.kafka.admin import admin_client, ensure_topics
from stream.kafka.copartition import (
    NotCopartitioned,
    check_copartitioning,
    copartition_problem,
    copartitioned_topics,
    partition_counts,
    profile_changelog_topic,
    require_copartitioned,
)
from stream.pipeline.tables import declare_tables


def test_equal_counts_matching_the_setting_pass() -> None:
    assert (
        copartition_problem(4, {"events": 4, "rerank-requests": 4, "app-user-profiles-changelog": 4}) is None
    )
    assert copartition_problem(4, {}) is None  # nothing exists yet: created with 4


def test_a_topic_with_another_count_is_named_with_every_count() -> None:
    problem = copartition_problem(4, {"events": 4, "rerank-requests": 3, "app-user-profiles-changelog": 4})
    assert problem is not None
    assert "'events' has 4" in problem and "'rerank-requests' has 3" in problem
    assert "'app-user-profiles-changelog' has 4" in problem
    assert "STREAMRANK_TOPIC_PARTITIONS is 4" in problem
    assert "recreate rerank-requests with 4 partitions" in problem


def test_topics_agreeing_with_each_other_but_not_the_setting_fail() -> None:
    problem = copartition_problem(8, {"events": 4, "rerank-requests": 4})
    assert problem is not None and "'events' has 4, 'rerank-requests' has 4 partitions" in problem
    assert "set STREAMRANK_TOPIC_PARTITIONS=4 to match them, or recreate them with 8" in problem


def test_the_changelog_is_named_as_faust_names_the_profiles_table() -> None:
    settings = Settings(app_id="shop-ranker", events_topic="ev", rerank_requests_topic="rr")
    app = faust.App(settings.app_id, broker="memory://", autodiscover=False)
    tables = declare_tables(app, settings, catalog=None)  # type: ignore[arg-type]
    assert tables.user_profiles.changelog_topic.get_topic_name() == profile_changelog_topic(settings)
    assert copartitioned_topics(settings) == ["ev", "rr", "shop-ranker-user-profiles-changelog"]


# --- Against a real broker --------------------------------------------------------------------


def fresh_settings(broker: tuple[str, str], partitions: int = 4) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    return Settings(
        broker=broker[0],
        broker_profile=broker[1],
        app_id=f"copartition-{suffix}",
        topic_partitions=partitions,
        events_topic=f"events-{suffix}",
        rerank_requests_topic=f"rerank-requests-{suffix}",
        items_topic=f"items-{suffix}",
        recommendations_topic=f"recommendations-{suffix}",
        dead_letters_topic=f"dead-letters-{suffix}",
    )


def create(settings: Settings, topic: str, partitions: int) -> None:
    ensure_topics(settings.model_copy(update={"topic_partitions": partitions}), [topic])


@pytest.mark.kafka
def test_the_check_reads_the_brokers_counts(broker: tuple[str, str]) -> None:
    settings = fresh_settings(broker)
    changelog = profile_changelog_topic(settings)
    # Nothing exists yet: nothing to compare, and nothing is created by looking.
    check_copartitioning(settings)
    admin = admin_client(settings)
    try:
        assert not set(copartitioned_topics(settings)) & set(admin.list_topics())
    finally:
        admin.close()

    create(settings, settings.events_topic, 4)
    create(settings, settings.rerank_requests_topic, 4)
    check_copartitioning(settings)  # the changelog does not exist yet: Faust creates it with 4
    create(settings, changelog, 2)
    assert partition_counts(settings, copartitioned_topics(settings)) == {
        settings.events_topic: 4,
        settings.rerank_requests_topic: 4,
        changelog: 2,
    }
    with pytest.raises(NotCopartitioned) as raised:
        check_copartitioning(settings)
    message = str(raised.value)
    assert f"'{changelog}' has 2" in message and f"'{settings.events_topic}' has 4" in message
    with pytest.raises(SystemExit, match="cannot start the worker: topics keyed by user id are not"):
        require_copartitioned(settings)
    # With the setting equal to every existing topic's count but one, still a mismatch.
    with pytest.raises(NotCopartitioned, match=r"STREAMRANK_TOPIC_PARTITIONS is 2"):
        check_copartitioning(settings.model_copy(update={"topic_partitions": 2}))


@pytest.mark.kafka
def test_a_worker_on_mismatched_topics_exits_with_the_counts(broker: tuple[str, str], tmp_path: Path) -> None:
    settings = fresh_settings(broker)
    create(settings, settings.events_topic, 4)
    create(settings, settings.rerank_requests_topic, 3)
    env = {
        **os.environ,
        "STREAMRANK_BROKER": settings.broker,
        "STREAMRANK_BROKER_PROFILE": settings.broker_profile,
        "STREAMRANK_APP_ID": settings.app_id,
        "STREAMRANK_TOPIC_PARTITIONS": "4",
        "STREAMRANK_EVENTS_TOPIC": settings.events_topic,
        "STREAMRANK_RERANK_REQUESTS_TOPIC": settings.rerank_requests_topic,
        "STREAMRANK_ITEMS_TOPIC": settings.items_topic,
        "STREAMRANK_RECOMMENDATIONS_TOPIC": settings.recommendations_topic,
        "STREAMRANK_DEAD_LETTERS_TOPIC": settings.dead_letters_topic,
        "STREAMRANK_DATA_DIR": str(tmp_path / "state"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "stream.tools.cli", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert f"'{settings.rerank_requests_topic}' has 3" in done.stderr, done.stderr[-2000:]
    assert f"'{settings.events_topic}' has 4" in done.stderr
