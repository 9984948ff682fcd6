"""Settings are the one source of defaults: the core's parameters are built from them, and
the settings import nothing of the core."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

from stream.config import Settings
from stream.core.covisit import CovisitParams
from stream.core.profiles import ProfileParams
from stream.core.ranking import RankingConfig

# Each setting the core's parameters take, and the field it becomes.
RANKING_FIELDS = {
    "weight_interest": "weight_interest",
    "weight_history": "weight_history",
    "weight_popularity": "weight_popularity",
    "weight_freshness": "weight_freshness",
    "weight_covisit": "weight_covisit",
    "weight_era": "weight_era",
    "era_scale_s": "era_scale_s",
    "top_k": "top_k",
    "history_similarity_items": "history_items",
    "covisit_history_items": "covisit_items",
    "popularity_half_life_s": "popularity_half_life_s",
    "freshness_half_life_s": "freshness_half_life_s",
    "mmr_lambda": "mmr_lambda",
    "mmr_pool": "mmr_pool",
}
COVISIT_FIELDS = {
    "covisit_window": "window",
    "covisit_window_s": "window_s",
    "covisit_backward_weight": "backward_weight",
    "covisit_half_life_s": "half_life_s",
    "covisit_max_neighbours": "max_neighbours",
}
PROFILE_FIELDS = {
    "interest_half_life_s": "half_life_s",
    "history_size": "history_size",
    "pending_size": "pending_size",
}


def _changed(names: list[str]) -> Settings:
    """Settings whose named fields all differ from their defaults (and from each other)."""
    defaults = Settings()
    values = {}
    for i, name in enumerate(names):
        value = getattr(defaults, name)
        values[name] = value + 1 + i if isinstance(value, int) else value * 0.5 + 0.01 * (i + 1)
    return Settings(**values)


def test_every_parameter_is_taken_from_its_setting() -> None:
    settings = _changed([*RANKING_FIELDS, *COVISIT_FIELDS, *PROFILE_FIELDS])
    checks = [
        (RankingConfig.from_settings(settings), RANKING_FIELDS),
        (CovisitParams.from_settings(settings), COVISIT_FIELDS),
        (ProfileParams.from_settings(settings, "m:mean:norm:8"), PROFILE_FIELDS),
    ]
    for params, fields in checks:
        taken = {f.name for f in dataclasses.fields(params)} - {"model_id"}
        assert taken == set(fields.values()), "every field comes from a setting"
        for setting, field in fields.items():
            assert getattr(params, field) == getattr(settings, setting), setting
    assert ProfileParams.from_settings(settings, "m:mean:norm:8").model_id == "m:mean:norm:8"


def test_the_core_parameters_have_no_defaults_of_their_own() -> None:
    for cls in (RankingConfig, CovisitParams, ProfileParams):
        for field in dataclasses.fields(cls):
            assert field.default is dataclasses.MISSING, f"{cls.__name__}.{field.name}"
            assert field.default_factory is dataclasses.MISSING, f"{cls.__name__}.{field.name}"


def test_the_settings_import_nothing_of_the_core() -> None:
    """The reverse (the core imports Settings for types only) is tests/stream/core/test_layering.py."""
    script = (
        "import sys, stream.config\nprint(sorted(m for m in sys.modules if m.startswith('stream.core')))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
