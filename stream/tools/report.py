"""Evaluation and benchmark reports: a Markdown table and a PNG plot per run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def metrics_table(methods: Mapping[str, Mapping[str, float]]) -> str:
    """A Markdown table with one row per method and one column per metric."""
    columns = list(next(iter(methods.values())).keys()) if methods else []
    lines = ["| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for method, values in methods.items():
        lines.append(f"| {method} | " + " | ".join(f"{values[c]:.4f}" for c in columns) + " |")
    return "\n".join(lines)


def bar_plot(path: Path, labels: Sequence[str], values: Sequence[float], title: str, ylabel: str) -> None:
    """Write a bar chart PNG (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    bars = ax.bar(labels, values, color="#4c72b0")
    ax.bar_label(bars, fmt="%.3f")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.margins(y=0.15)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def line_plot(
    path: Path,
    x: Sequence[float],
    series: Mapping[str, Sequence[float]],
    title: str,
    xlabel: str,
    ylabel: str,
    markers: Mapping[str, float] | None = None,
) -> None:
    """Write a line chart PNG: one line per series over ``x``, labelled vertical markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=120)
    for name, values in series.items():
        ax.plot(x, values, marker="o", label=name)
    for (name, at), style in zip((markers or {}).items(), ("--", ":", "-."), strict=False):
        ax.axvline(at, color="grey", linestyle=style, label=name)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_eval_report(
    directory: Path, name: str, summary: Mapping[str, Any], notes: Sequence[str], metric: str
) -> Path:
    """Write ``<name>.md`` and ``<name>-<metric>.png`` into ``directory``; return the .md path."""
    directory.mkdir(parents=True, exist_ok=True)
    methods = summary["methods"]
    png = directory / f"{name}-{metric.replace('@', '')}.png"
    bar_plot(
        png,
        list(methods),
        [methods[m][metric] for m in methods],
        f"{name}: {metric} per method (n={summary['n']})",
        metric,
    )
    text = [f"# {name}", "", *notes, "", f"Scored events: n = {summary['n']}", ""]
    text += [metrics_table(methods), "", f"![{metric} per method]({png.name})", ""]
    md = directory / f"{name}.md"
    md.write_text("\n".join(text), encoding="utf-8")
    return md
