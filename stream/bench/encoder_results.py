"""The figures of ``streamrank bench encoder``: one row per encoder, the JSON summary, the table."""

from __future__ import annotations

import datetime
from dataclasses import asdict, dataclass
from typing import Any

from stream.bench.device import machine

# Names of the rows the summary reads.
BASELINE = "sentence-transformers default"
NAIVE = "naive loop (batch 32, fp32)"
INT8 = "streamrank (int8)"
FP16 = "sentence-transformers fp16"


@dataclass
class Row:
    """Figures of one encoder."""

    name: str
    items_per_s: float
    tokens_per_s: float
    p50_ms: float
    p99_ms: float
    peak_mib: float | None
    min_cosine: float | None = None
    mean_cosine: float | None = None


def encoder_summary(
    rows: list[Row],
    streamrank_name: str,
    run_facts: dict[str, Any],
    service: dict[str, Any] | None,
    clients: int,
) -> dict[str, Any]:
    """The JSON line: streamrank's figures, the baselines' rates, and how the run was made."""
    import torch

    row_of = {row.name: row for row in rows}
    main = row_of[streamrank_name]
    baseline = row_of.get(BASELINE)
    summary: dict[str, Any] = {
        "items_per_s": round(main.items_per_s, 1),
        "baseline_items_per_s": round(baseline.items_per_s, 1) if baseline else None,
        "naive_items_per_s": round(row_of[NAIVE].items_per_s, 1),
        "min_cosine": round(main.min_cosine or 0.0, 7),
        "mean_cosine": round(main.mean_cosine or 0.0, 7),
        "device": run_facts["device"],
        "model": run_facts["model"],
        "speedup_vs_baseline": round(main.items_per_s / baseline.items_per_s, 3) if baseline else None,
        "reference": "sentence-transformers fp32" if baseline else "naive loop fp32",
        "n": run_facts["n"],
        "runs": run_facts["runs"],
        "clock": run_facts["clock"],
        "mean_tokens": run_facts["mean_tokens"],
        "max_batch_tokens": run_facts["max_batch_tokens"],
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": machine(run_facts["device"]),
        "date": datetime.date.today().isoformat(),
        "rows": [asdict(row) for row in rows],
    }
    int8 = row_of.get(INT8)
    if int8 is not None:
        summary["int8_items_per_s"] = round(int8.items_per_s, 1)
        summary["int8_min_cosine"] = round(int8.min_cosine or 0.0, 7)
        summary["int8_mean_cosine"] = round(int8.mean_cosine or 0.0, 7)
    fp16 = row_of.get(FP16)
    if fp16 is not None:
        summary["baseline_fp16_items_per_s"] = round(fp16.items_per_s, 1)
    if service is not None:
        summary["service_items_per_s"] = round(service["items_per_s"], 1)
        summary["service_clients"] = clients
    return summary


def print_table(result: dict[str, Any]) -> None:
    """The run's facts, one table row per encoder, and the ratios that matter."""
    summary = result["summary"]
    memory = "GPU MiB" if summary["device"] == "cuda" else "RSS MiB"
    print(
        f"\nencoder benchmark: {summary['model']} on {summary['device']} ({summary['machine']}), "
        f"{summary['n']} MovieLens item texts, {summary['mean_tokens']} tokens on average, "
        f"torch {summary['torch']} with {summary['torch_threads']} threads, "
        f"streamrank max_batch_tokens {summary['max_batch_tokens']}; items/s by {summary['clock']} time; "
        f"agreement vs {summary['reference']}"
    )
    header = ["encoder", "items/s", "tokens/s", "p50 ms", "p99 ms", memory, "min cos", "mean cos"]
    lines = [header]
    for row in result["rows"]:
        lines.append(
            [
                row.name,
                f"{row.items_per_s:,.0f}",
                f"{row.tokens_per_s:,.0f}",
                f"{row.p50_ms:.1f}",
                f"{row.p99_ms:.1f}",
                "-" if row.peak_mib is None else f"{row.peak_mib:,.0f}",
                "-" if row.min_cosine is None else f"{row.min_cosine:.5f}",
                "-" if row.mean_cosine is None else f"{row.mean_cosine:.5f}",
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for n, line in enumerate(lines):
        numbers = [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]
        cells = [line[0].ljust(widths[0]), *numbers]
        print("  ".join(cells))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    if summary.get("speedup_vs_baseline"):
        print(f"streamrank vs sentence-transformers default: {summary['speedup_vs_baseline']:.2f}x")
    if "int8_items_per_s" in summary and summary.get("baseline_items_per_s"):
        ratio = summary["int8_items_per_s"] / summary["baseline_items_per_s"]
        print(f"streamrank int8 vs sentence-transformers default: {ratio:.2f}x")
    if "service_items_per_s" in summary:
        ratio = summary["service_items_per_s"] / summary["items_per_s"]
        print(f"service ({summary['service_clients']} clients) vs in-process: {ratio:.2f}x")
