"""``gcrl info SOURCE [--json]``: what a dataset holds, as a table or as JSON."""

from __future__ import annotations

import argparse
import json
from typing import Any

from gcrl.datasets.loading import format_names


def add_parser(commands: Any) -> None:
    """Register the ``info`` subcommand."""
    parser = commands.add_parser(
        "info",
        help="summarise a dataset (any supported format)",
        description="Summarise a dataset: sizes, shapes, episode lengths, returns and tasks.",
    )
    parser.add_argument("source", help="file, Minari dataset directory or local Minari id")
    parser.add_argument("--format", choices=format_names(), help="override format detection")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=run)


def run(options: argparse.Namespace) -> int:
    """Print the summary of ``options.source``."""
    from gcrl.datasets.summary import summarize

    summary = summarize(options.source, format=options.format)
    print(json.dumps(summary, indent=2) if options.json else format_table(summary))
    return 0


def _shape(spec: dict[str, Any]) -> str:
    return f"{tuple(spec['shape'])!s:<10} {spec['dtype']}"


def _stats(stats: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4g}" for k, v in stats.items())


def _episodes(summary: dict[str, Any]) -> str:
    """The episodes line; a relabeled file's as source episodes and copies (each relabeled
    row is stored as a one-step episode, which as a count of episodes reads as a bug)."""
    lengths = summary["episode_length"]
    relabeled = summary.get("relabeled")
    if not relabeled:
        return (
            f"{summary['episodes']:,}   length min {lengths['min']} / "
            f"mean {lengths['mean']:.1f} / max {lengths['max']}"
        )
    copies = f"k = {relabeled['copies']} per transition; " if relabeled["copies"] else ""
    stored = (
        "stored as goal references to the rows"
        if relabeled.get("by_reference")
        else f"stored as {summary['episodes']:,} episodes"
    )
    return (
        f"{relabeled['source_episodes']:,} source episodes ({relabeled['source_transitions']:,} "
        f"transitions) + {relabeled['relabeled_transitions']:,} relabeled ({copies}{stored})"
    )


def format_table(summary: dict[str, Any]) -> str:
    """A human-readable rendering of :func:`gcrl.datasets.summary.summarize`'s output."""
    rows: list[tuple[str, str]] = [
        ("source", summary["source"]),
        ("format", summary["format"]),
        ("transitions", f"{summary['transitions']:,}"),
        ("episodes", _episodes(summary)),
        ("ends", f"terminals {summary['terminals']:,}   timeouts {summary['timeouts']:,}"),
    ]
    observations = summary["observations"]
    for i, (key, spec) in enumerate(observations.items()):
        label = "observations" if i == 0 else ""
        name = "" if key == "observations" else f"{key:<15} "
        rows.append((label, name + _shape(spec)))
    rows.append(("actions", _shape(summary["actions"])))
    rows.append(("rewards", _stats(summary["rewards"])))
    rows.append(("returns", _stats(summary["returns"])))
    for i, (key, spec) in enumerate(summary["infos"].items()):
        rows.append(("infos" if i == 0 else "", f"{key:<15} " + _shape(spec)))
    if summary["tasks"]:
        width = max(20, *(len(task["name"]) for task in summary["tasks"]))  # names line up
        header = f"{'id':>3}  {'name':<{width}} {'transitions':>11} {'episodes':>8}  text"
        rows.append(("tasks", header))
        for task in summary["tasks"]:
            rows.append(
                (
                    "",
                    f"{task['id']:>3}  {task['name']:<{width}} {task['transitions']:>11,} "
                    f"{task['episodes']:>8,}  {task['text']}",
                )
            )
    else:
        rows.append(("tasks", "none"))
    for key, value in summary["attrs"].items():
        rows.append(
            ("provenance" if key == next(iter(summary["attrs"])) else "", f"{key} = {value}")
        )
    return "\n".join(f"{label:<14}{value}" for label, value in rows)
