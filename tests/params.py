"""The core's parameters as production builds them (``Settings()``), with a test's overrides.

``RankingConfig`` and ``CovisitParams`` have no defaults of their own; a test names only the
fields its assertion depends on.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from stream.config import Settings
from stream.core.covisit import CovisitParams
from stream.core.ranking import RankingConfig


@functools.cache
def _settings() -> Settings:
    return Settings()


def ranking_config(**overrides: Any) -> RankingConfig:
    """Production's ranking configuration with ``overrides`` applied."""
    return dataclasses.replace(RankingConfig.from_settings(_settings()), **overrides)


def covisit_params(**overrides: Any) -> CovisitParams:
    """Production's co-visitation parameters with ``overrides`` applied."""
    return dataclasses.replace(CovisitParams.from_settings(_settings()), **overrides)
