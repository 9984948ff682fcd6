"""The README's configuration table is the settings' own documentation.

Run ``python -m tests.stream.test_config_docs`` to rewrite the table from the settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from encoders.config import EncoderSettings
from stream.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"
HEADER = "| variable | default | meaning |\n|---|---|---|\n"

# Defaults that depend on the machine are described rather than printed.
_DESCRIBED_DEFAULTS = {
    "data": "../shared/data/ml-latest-small if present",
    "cache_dir": "~/.cache/streamrank",
}


def _default_text(name: str, field: Any) -> str:
    value = field.default if field.default_factory is None else field.default_factory()
    if name in _DESCRIBED_DEFAULTS:
        text = _DESCRIBED_DEFAULTS[name]
    elif isinstance(value, dict):
        text = ", ".join(f"{k} {v:g}" for k, v in value.items())
    else:
        text = str(value)
    return f"`{text}`" if text else "(empty)"


def _row(variable: str, name: str, field: Any) -> str:
    description = str(field.description).replace("|", "\\|")  # a bare | would split the cell
    return f"| `{variable}` | {_default_text(name, field)} | {description} |"


def expected_table() -> str:
    """The configuration table generated from ``Settings`` and ``EncoderSettings``."""
    rows = [
        _row(f"STREAMRANK_{name.upper()}", name, field)
        for name, field in Settings.model_fields.items()
        if name != "encoder"
    ]
    rows += [
        _row(f"STREAMRANK_ENCODER_{name.upper()}", name, field)
        for name, field in EncoderSettings.model_fields.items()
    ]
    return HEADER + "\n".join(rows)


def readme_table(text: str) -> tuple[int, int]:
    """(start, end) of the configuration table in the README's text."""
    start = text.index(HEADER)
    return start, text.index("\n\n", start)


def test_readme_configuration_table_matches_the_settings() -> None:
    text = README.read_text(encoding="utf-8")
    start, end = readme_table(text)
    assert text[start:end] == expected_table(), "run: python -m tests.stream.test_config_docs"


if __name__ == "__main__":
    text = README.read_text(encoding="utf-8")
    start, end = readme_table(text)
    README.write_text(text[:start] + expected_table() + text[end:], encoding="utf-8")
