"""The math imports nothing of Faust or Kafka: ``stream.core`` loads without them."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import stream.core


def test_the_core_packages_import_no_stream_processing_or_kafka_library() -> None:
    modules = [f"stream.core.{m.name}" for m in pkgutil.iter_modules(stream.core.__path__)]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "roots = {'faust', 'mode', 'kafka', 'aiokafka', 'pydantic_settings'}\n"
        "layers = ('stream.pipeline', 'stream.kafka', 'stream.config')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in roots or m.startswith(layers)))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert len(modules) >= 9
    assert loaded.strip() == "[]"
