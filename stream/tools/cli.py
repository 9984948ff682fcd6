"""The ``streamrank`` command: worker, encode-server, demo, replay, eval, topics, schemas, bench.

Settings come from ``STREAMRANK_*`` environment variables; flags given on the command
line override them. This is the only place that builds ``Settings``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from encoders.config import EncoderSettings
from stream.bench import add_bench_parser, run_bench
from stream.config import Settings


def _common_kafka(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", help="Kafka bootstrap servers (env STREAMRANK_BROKER)")
    parser.add_argument(
        "--broker-profile",
        choices=["kafka", "embedded"],
        help="broker workarounds (env STREAMRANK_BROKER_PROFILE; default kafka)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="streamrank",
        description="Streaming real-time recommendation reranker on Kafka.",
    )
    parser.add_argument("--log-level", default=None, help="log level (env STREAMRANK_LOG_LEVEL)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    worker = sub.add_parser(
        "worker",
        help="run a worker (production entry point; configured by STREAMRANK_* variables)",
        description="Consume events, items and rerank requests; emit recommendations.",
    )
    _common_kafka(worker)
    worker.add_argument(
        "--web-port", type=int, help="HTTP port: /metrics, /healthz (env STREAMRANK_WEB_PORT)"
    )
    worker.add_argument("--data-dir", help="RocksDB state directory (env STREAMRANK_DATA_DIR)")
    worker.add_argument("--store", help="table store: rocksdb:// or memory:// (env STREAMRANK_STORE)")

    demo = sub.add_parser(
        "demo",
        help="start an embedded broker and a worker, replay MovieLens, show live lists",
        description="End-to-end demo on the embedded broker (or --broker) with real MovieLens data.",
    )
    _common_kafka(demo)
    demo.add_argument("--data", help="MovieLens ml-latest-small directory (env STREAMRANK_DATA)")
    demo.add_argument("--max-events", type=int, default=None, help="replay only the first N ratings")
    demo.add_argument(
        "--rate",
        type=float,
        default=500.0,
        help="events per second, a live-traffic pace below the worker's capacity so the "
        "latency shown is steady-state (0: unthrottled, latency then measures the backlog)",
    )
    demo.add_argument("--users", type=int, default=3, help="users whose lists are printed live")
    demo.add_argument("--web-port", type=int, help="worker HTTP port (default: a free port)")

    replay = sub.add_parser("replay", help="publish a dataset to Kafka")
    replay_sub = replay.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    movielens = replay_sub.add_parser(
        "movielens",
        help="MovieLens ml-latest-small: items, then ratings in time order",
        description="Publish MovieLens items to the items topic, then ratings as events.",
    )
    _common_kafka(movielens)
    movielens.add_argument("--data", help="ml-latest-small directory (env STREAMRANK_DATA)")
    movielens.add_argument("--rate", type=float, default=0.0, help="events per second (0: unthrottled)")
    movielens.add_argument("--max-events", type=int, default=None, help="stop after N events")
    movielens.add_argument("--no-items", action="store_true", help="skip the catalog")
    movielens.add_argument("--no-events", action="store_true", help="skip the events")

    evaluate = sub.add_parser("eval", help="measure recommendation quality on real data")
    evaluate_sub = evaluate.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    eval_ml = evaluate_sub.add_parser(
        "movielens",
        help="prequential evaluation on MovieLens ratings (rank before each event, then apply it)",
        description="Rank the catalog for each sampled event of the evaluation period before "
        "applying it; report HR, nDCG, MRR and coverage at K for random, popularity, content, "
        "covisit and hybrid (the production configuration).",
    )
    eval_ml.add_argument("--data", help="ml-latest-small directory (env STREAMRANK_DATA)")
    eval_ml.add_argument(
        "--eval-fraction", type=float, default=0.2, help="last fraction of ratings (in time) evaluated"
    )
    eval_ml.add_argument("--sample", type=float, default=0.25, help="fraction of evaluation events scored")
    eval_ml.add_argument("--seed", type=int, default=0, help="seed of the sample and the random method")
    eval_ml.add_argument("--json", action="store_true", help="print the summary as JSON on the last line")
    eval_ml.add_argument("--report", type=Path, help="write a Markdown report and a PNG plot here")
    eval_ml.add_argument(
        "--popularity-half-life-s",
        type=float,
        default=None,
        help="half-life of the popularity baseline's counts (default: one year, its best on a "
        "tuning split; the hybrid always uses STREAMRANK_POPULARITY_HALF_LIFE_S)",
    )
    eval_ml.add_argument("--no-progress", action="store_true", help="no progress bar")
    eval_ml.add_argument(
        "--online",
        action="store_true",
        help="also replay the data through a broker (embedded unless --broker) and a real worker, "
        "and score the lists it emits with the same sample and metrics",
    )
    eval_ml.add_argument(
        "--online-rate", type=float, default=500.0, help="events/s of the evaluation period in --online"
    )
    _common_kafka(eval_ml)
    eval_mind = evaluate_sub.add_parser(
        "mind",
        help="impression-level evaluation on MIND-format news data (AUC, MRR, nDCG@5/10)",
        description="Replay impressions in time order: rerank each impression's candidates before "
        "its clicks are revealed, then apply the clicks as events; the History column seeds profiles.",
    )
    eval_mind.add_argument("--news", type=Path, required=True, help="news.tsv (MIND format)")
    eval_mind.add_argument("--behaviors", type=Path, required=True, help="behaviors.tsv (MIND format)")
    eval_mind.add_argument("--seed", type=int, default=0, help="seed of the random method")
    eval_mind.add_argument("--json", action="store_true", help="print the summary as JSON on the last line")
    eval_mind.add_argument("--report", type=Path, help="write a Markdown report and a PNG plot here")

    server = sub.add_parser(
        "encode-server",
        help="run the encoder service (POST /embed, /healthz, /metrics)",
        description="Serve the encoder over HTTP with dynamic batching; the model comes from "
        "the STREAMRANK_ENCODER_* variables.",
    )
    server.add_argument("--host", help="bind address (env STREAMRANK_ENCODER_HOST; default 0.0.0.0)")
    server.add_argument("--port", type=int, help="port (env STREAMRANK_ENCODER_PORT; default 8080)")

    topics = sub.add_parser("topics", help="manage topics")
    topics_sub = topics.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = topics_sub.add_parser("create", help="create missing topics, then exit")
    _common_kafka(create)

    schemas = sub.add_parser(
        "schemas",
        help="write the JSON Schemas of the message contracts",
        description="Write the JSON Schema of each message contract (events, items, rerank-requests, "
        "recommendations, dead-letters), generated from stream.core.contracts.",
    )
    schemas.add_argument("--out", type=Path, default=Path("schemas"), help="directory (default: ./schemas)")

    add_bench_parser(sub)
    _add_chaos_parser(sub)
    return parser


def _add_chaos_parser(sub: Any) -> None:
    from stream.chaos.runner import DESCRIPTIONS

    chaos = sub.add_parser(
        "chaos",
        help="run a fault-injection scenario and check what survives it",
        description="Start the embedded broker (unless --broker) and workers, replay MovieLens "
        "events, inject a fault, wait until the pipeline is quiet and check the state against "
        "a reference computed without faults. Exits 1 when the scenario's property fails. "
        "Scenarios: " + "; ".join(f"{name}: {text}" for name, text in DESCRIPTIONS.items()) + ".",
    )
    chaos.add_argument("scenario", choices=list(DESCRIPTIONS), help="the fault to inject")
    _common_kafka(chaos)
    chaos.add_argument("--data", help="MovieLens ml-latest-small directory (env STREAMRANK_DATA)")
    chaos.add_argument("--json", action="store_true", help="print the summary as JSON on the last line")
    chaos.add_argument("--events", type=int, help="ratings replayed (default: the scenario's own)")
    chaos.add_argument("--rate", type=float, help="events per second (default: the scenario's own)")
    chaos.add_argument(
        "--workers",
        type=int,
        default=2,
        help="worker processes of the kill and freeze scenarios (default 2; encoder-outage and fuzz run 1)",
    )
    chaos.add_argument("--kills", type=int, default=5, help="kill-repeated: kill -9s (default 5)")
    chaos.add_argument(
        "--kill-at", type=float, default=0.3, help="kill-one: fraction of the events sent before the kill"
    )
    chaos.add_argument("--freeze-s", type=float, default=30.0, help="broker-freeze: seconds frozen")
    chaos.add_argument("--outage-s", type=float, default=15.0, help="encoder-outage: seconds per outage")
    chaos.add_argument(
        "--outages",
        default="killed,hanging,503",
        help="encoder-outage: the outages, in order (default killed,hanging,503)",
    )
    chaos.add_argument("--fuzz", type=int, default=10_000, help="fuzz: bad payloads (default 10,000)")
    chaos.add_argument("--seed", type=int, default=0, help="fuzz: seed of the payloads")
    chaos.add_argument(
        "--no-fault", action="store_true", help="run the scenario without its fault (checks the harness)"
    )
    chaos.add_argument("--workdir", type=Path, help="keep logs and worker state here")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Environment settings with the flags that were given applied on top."""
    flags = {
        "broker": "broker",
        "broker_profile": "broker_profile",
        "web_port": "web_port",
        "data_dir": "data_dir",
        "store": "store",
        "data": "data",
        "log_level": "log_level",
    }
    overrides: dict[str, Any] = {
        field: getattr(args, attr) for attr, field in flags.items() if getattr(args, attr, None) is not None
    }
    encoder_flags = {"host": "host", "port": "port"}
    encoder_overrides = {
        field: getattr(args, attr)
        for attr, field in encoder_flags.items()
        if getattr(args, attr, None) is not None
    }
    if encoder_overrides:
        # Nested settings read their own environment; the flags go on top of it.
        overrides["encoder"] = EncoderSettings(**encoder_overrides)
    return Settings(**overrides)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``streamrank`` console script."""
    args = build_parser().parse_args(argv)
    settings = settings_from_args(args)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if settings.log_level.lower() != "debug":
        # kafka-python logs every connection at INFO and its own loop stalls at WARNING.
        logging.getLogger("kafka").setLevel(logging.ERROR)
    if args.command == "worker":
        from stream.pipeline.worker import run_worker

        run_worker(settings)
        return 0
    if args.command == "encode-server":
        from encoders.service import run_server

        return run_server(settings.encoder)
    if args.command == "bench":
        return run_bench(args, settings)
    if args.command == "chaos":
        return _run_chaos(args, settings)
    if args.command == "demo":
        from stream.tools.demo import run_demo

        return run_demo(settings, max_events=args.max_events, rate=args.rate, users=args.users)
    if args.command == "replay":
        from stream.tools.replay import replay_movielens

        stats = replay_movielens(
            settings,
            settings.data,
            rate=args.rate,
            max_events=args.max_events,
            send_items=not args.no_items,
            send_events=not args.no_events,
        )
        print(f"sent {stats.items} items and {stats.events} events in {stats.seconds:.1f}s")
        return 0
    if args.command == "eval":
        return _run_eval(args, settings)
    if args.command == "topics":
        from stream.kafka.admin import ensure_topics

        created = ensure_topics(settings)
        print(f"created: {', '.join(created) or 'none (all exist)'}")
        return 0
    if args.command == "schemas":
        from stream.core.schemas import schema_files

        args.out.mkdir(parents=True, exist_ok=True)
        for name, text in schema_files().items():
            (args.out / name).write_text(text, encoding="utf-8")
            print(args.out / name)
        return 0
    raise AssertionError(f"unhandled command {args.command}")


def _run_chaos(args: argparse.Namespace, settings: Settings) -> int:
    from stream.chaos.result import ChaosOptions
    from stream.chaos.runner import run_scenario

    options = ChaosOptions(
        events=args.events,
        rate=args.rate,
        workers=args.workers,
        kills=args.kills,
        kill_at=args.kill_at,
        freeze_s=args.freeze_s,
        outage_s=args.outage_s,
        outages=tuple(o for o in args.outages.split(",") if o),
        fuzz=args.fuzz,
        seed=args.seed,
        no_fault=args.no_fault,
        workdir=args.workdir,
    )
    result = run_scenario(args.scenario, settings, options)
    result.print(args.json)
    return 0 if result.ok else 1


def _run_eval_mind(args: argparse.Namespace, settings: Settings) -> int:
    from encoders.text import TextEncoder
    from stream.eval.mind import evaluate_mind
    from stream.tools.report import metrics_table, write_eval_report

    for path in (args.news, args.behaviors):
        if not path.is_file():
            raise SystemExit(f"{path}: no such file")
    summary = evaluate_mind(
        settings, args.news, args.behaviors, TextEncoder.from_settings(settings.encoder), seed=args.seed
    )
    print(f"MIND impression evaluation: {summary['n']} impressions")
    print(metrics_table(summary["methods"]))
    if args.report:
        notes = [
            f"News: `{args.news}`; behaviors: `{args.behaviors}`. Impressions in time order; each "
            "impression's candidates are reranked before its clicks are applied.",
        ]
        print(f"report: {write_eval_report(args.report, 'mind', summary, notes, 'auc')}")
    if args.json:
        print(json.dumps(summary))
    return 0


def _run_eval(args: argparse.Namespace, settings: Settings) -> int:
    if args.dataset == "mind":
        return _run_eval_mind(args, settings)
    from encoders.text import TextEncoder
    from stream.datasets.movielens import resolve_data_dir
    from stream.eval.movielens import BASELINE_POPULARITY_HALF_LIFE_S, evaluate_movielens, split_movielens
    from stream.tools.report import metrics_table, write_eval_report

    data = resolve_data_dir(settings.data, settings.cache_dir)
    baseline_half_life = args.popularity_half_life_s or BASELINE_POPULARITY_HALF_LIFE_S
    summary = evaluate_movielens(
        settings,
        data,
        TextEncoder.from_settings(settings.encoder),
        eval_fraction=args.eval_fraction,
        sample=args.sample,
        seed=args.seed,
        baseline_popularity_half_life_s=baseline_half_life,
        show_progress=not args.no_progress,
    )
    print(f"MovieLens prequential evaluation: {summary['n']} scored events")
    print(metrics_table(summary["methods"]))
    notes = [
        f"Data: `{data}`; evaluation period: last {args.eval_fraction:.0%} of ratings by time; "
        f"scored sample: {args.sample:.0%} (seed {args.seed}) of events whose user has at least "
        "5 earlier interactions.",
        "Each scored event is ranked against the whole catalog before it is applied; items the "
        "user interacted with are excluded.",
        f"popularity: counts decayed with a {baseline_half_life / 86400:g}-day half-life (the "
        f"baseline's own); the hybrid's popularity term: {settings.popularity_half_life_s / 86400:g} days.",
    ]
    if args.online:
        from stream.eval.online import replay_online, score_online

        split = split_movielens(data, args.eval_fraction, args.sample, args.seed, settings.max_text_chars)
        lists = replay_online(settings, data, split, args.online_rate)
        n_online, online = score_online(split, lists, settings.top_k)
        summary["online"] = {"n": n_online, "hybrid": {k: round(v, 5) for k, v in online.items()}}
        metric = f"hr@{settings.top_k}"
        offline_hr = summary["methods"]["hybrid"][metric]
        # Two binomial standard errors of the difference of two HR estimates.
        noise = 2 * ((offline_hr * (1 - offline_hr) / max(summary["n"], 1)) * 2) ** 0.5
        summary["online"]["difference"] = round(online[metric] - offline_hr, 5)
        summary["online"]["noise_2se"] = round(noise, 5)
        verdict = "within" if abs(online[metric] - offline_hr) <= noise else "OUTSIDE"
        line = (
            f"online (real broker and worker, n={n_online}): hybrid {metric} {online[metric]:.4f} "
            f"vs offline {offline_hr:.4f}: difference {online[metric] - offline_hr:+.4f}, "
            f"{verdict} sampling noise (2 SE = {noise:.4f})"
        )
        print(line)
        notes.append(line)
    if args.report:
        path = write_eval_report(args.report, "movielens", summary, notes, f"hr@{settings.top_k}")
        print(f"report: {path}")
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
