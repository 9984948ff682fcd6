"""The start-up check that the topics keyed by user id are co-partitioned.

A user's profile lives in the ``user-profiles`` store of the partition their events arrive
on, its changelog is written to that same partition number, and a rerank request reads the
profile of its own partition. So ``events``, ``rerank-requests`` and the profiles'
changelog (``<app_id>-user-profiles-changelog``) must have the same number of partitions,
the configured ``topic_partitions``. Faust does not check it: it groups topics by partition
count and assigns each group on its own, so a mismatch silently gives a user's requests
and events to different workers, or fails the first profile write to a partition the
changelog lacks. Checked read-only with the admin client, before the worker starts.
"""

from __future__ import annotations

from collections.abc import Mapping

from stream.config import Settings
from stream.errors import StreamrankError
from stream.kafka.admin import admin_client

#: Name of the profiles table (``stream.pipeline.tables``); Faust names its changelog
#: ``<app id>-<table>-changelog``.
PROFILES_TABLE = "user-profiles"


class NotCopartitioned(StreamrankError):
    """Topics that must be co-partitioned have other partition counts."""


def profile_changelog_topic(settings: Settings) -> str:
    """The changelog topic Faust gives the ``user-profiles`` table."""
    return f"{settings.app_id}-{PROFILES_TABLE}-changelog"


def copartitioned_topics(settings: Settings) -> list[str]:
    """The topics whose partitions must line up one to one, by user id."""
    return [settings.events_topic, settings.rerank_requests_topic, profile_changelog_topic(settings)]


def copartition_problem(expected: int, counts: Mapping[str, int]) -> str | None:
    """What is wrong with the partition counts of existing topics, or None when nothing is.

    Args:
        expected: the configured partition count (``STREAMRANK_TOPIC_PARTITIONS``).
        counts: the partition count of each existing topic that must be co-partitioned;
            topics that do not exist yet are left out (they are created with ``expected``).
    """
    wrong = sorted(topic for topic, n in counts.items() if n != expected)
    if not wrong:
        return None
    listed = ", ".join(f"{topic!r} has {n}" for topic, n in counts.items())
    agreed = set(counts.values())
    if len(agreed) == 1:
        # They agree with each other: the setting is what differs.
        fix = (
            f"set STREAMRANK_TOPIC_PARTITIONS={agreed.pop()} to match them, "
            f"or recreate them with {expected} partitions"
        )
    else:
        fix = f"recreate {', '.join(wrong)} with {expected} partitions"
    return (
        f"topics keyed by user id are not co-partitioned: {listed} partitions, and "
        f"STREAMRANK_TOPIC_PARTITIONS is {expected}. A user's events, rerank requests and "
        f"profile must share one partition number, so all of them need {expected}; {fix}."
    )


def partition_counts(settings: Settings, topics: list[str]) -> dict[str, int]:
    """The partition count of each of ``topics`` that exists (read-only metadata requests)."""
    admin = admin_client(settings)
    try:
        # Listing first: a metadata request naming a missing topic may create it on
        # brokers with auto-creation on.
        existing = set(admin.list_topics())
        wanted = [topic for topic in topics if topic in existing]
        if not wanted:
            return {}
        described = {meta["name"]: len(meta["partitions"]) for meta in admin.describe_topics(wanted)}
    finally:
        admin.close()
    return {topic: described[topic] for topic in wanted if topic in described}


def check_copartitioning(settings: Settings) -> None:
    """Raise :class:`NotCopartitioned` when the user-keyed topics' partition counts differ.

    Topics that do not exist yet pass: they are created with ``topic_partitions``.
    """
    problem = copartition_problem(
        settings.topic_partitions, partition_counts(settings, copartitioned_topics(settings))
    )
    if problem is not None:
        raise NotCopartitioned(problem)


def require_copartitioned(settings: Settings) -> None:
    """:func:`check_copartitioning` for the worker's start: a mismatch exits with the message."""
    try:
        check_copartitioning(settings)
    except NotCopartitioned as exc:
        raise SystemExit(f"cannot start the worker: {exc}") from exc
