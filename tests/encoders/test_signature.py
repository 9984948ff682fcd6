"""The pooling a model declares in its sentence-transformers files, read without weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from encoders.signature import declared_pooling


def _write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _st_modules(pooling_path: str, *extra: str) -> list[dict[str, object]]:
    modules: list[dict[str, object]] = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": pooling_path,
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    for i, kind in enumerate(extra, start=2):
        modules.append({"idx": i, "name": str(i), "path": f"{i}_{kind}", "type": kind})
    return modules


def test_pooling_from_modules_json(tmp_path: Path) -> None:
    _write(tmp_path / "modules.json", _st_modules("custom_pool"))
    _write(tmp_path / "custom_pool" / "config.json", {"pooling_mode_max_tokens": True})
    _write(tmp_path / "1_Pooling" / "config.json", {"pooling_mode_cls_token": True})
    assert declared_pooling(str(tmp_path), is_local=True) == "max"


def test_pooling_falls_back_to_1_pooling(tmp_path: Path) -> None:
    _write(tmp_path / "1_Pooling" / "config.json", {"pooling_mode_cls_token": True})
    assert declared_pooling(str(tmp_path), is_local=True) == "cls"


def test_pooling_defaults_to_mean(tmp_path: Path) -> None:
    assert declared_pooling(str(tmp_path), is_local=True) == "mean"


def test_pooling_new_style_config(tmp_path: Path) -> None:
    _write(tmp_path / "1_Pooling" / "config.json", {"pooling_mode": "cls"})
    assert declared_pooling(str(tmp_path), is_local=True) == "cls"


@pytest.mark.parametrize(
    "config",
    [
        {"pooling_mode_mean_sqrt_len_tokens": True},
        {"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True},
        {"pooling_mode": "lasttoken"},
    ],
)
def test_unsupported_declared_pooling_is_refused(tmp_path: Path, config: dict[str, object]) -> None:
    _write(tmp_path / "1_Pooling" / "config.json", config)
    with pytest.raises(ValueError, match="pooling"):
        declared_pooling(str(tmp_path), is_local=True)


def test_unsupported_modules_are_refused(tmp_path: Path) -> None:
    modules = _st_modules("1_Pooling", "sentence_transformers.models.Dense")
    _write(tmp_path / "modules.json", modules)
    with pytest.raises(ValueError, match="Dense"):
        declared_pooling(str(tmp_path), is_local=True)
