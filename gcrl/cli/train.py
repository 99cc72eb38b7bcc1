"""``gcrl fit | validate | test --config CONFIG.yaml``: LightningCLI over gcrl's algorithms.

The model is any :class:`gcrl.algorithms.GCRLModule` subclass (``model.class_path``), the
data a :class:`gcrl.training.TrajectoryDataModule`; the data's shapes and tasks
(``data.spec``) are linked into the model when both are built. Logs (CSV and TensorBoard) and
checkpoints go under ``runs/`` (``runs/csv/version_N/`` holds ``metrics.csv``, the
config and ``checkpoints/``) unless the config says otherwise.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from gcrl.algorithms.base import GCRLModule
from gcrl.training.datamodule import TrajectoryDataModule

SUBCOMMANDS = ("fit", "validate", "test")

TRAINER_DEFAULTS: dict[str, Any] = {
    "default_root_dir": "runs",
    # Checkpoints go beside the first logger's files: runs/csv/version_N/checkpoints.
    "logger": [
        {
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": "runs", "name": "csv"},
        },
        {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            "init_args": {"save_dir": "runs", "name": "tensorboard"},
        },
    ],
}


class GcrlCLI(LightningCLI):
    """LightningCLI in subclass mode, with the data spec linked into the model."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.spec", "model.init_args.spec", apply_on="instantiate")


#: Lightning messages that say nothing about the run: advertisements, a deprecation inside
#: Lightning itself, and the empty validation loader of runs without a validation split.
HARMLESS_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated",
    r"Total length of `FixedBatches` across ranks is zero",
    # sys.argv holds the command for Lightning's DDP launcher, and LightningCLI reads args.
    r"LightningCLI's args parameter is intended to run from within Python",
)


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def quiet_lightning() -> None:
    """Silence Lightning's tips and the known-harmless warnings (idempotent)."""
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropTips) for f in logger.filters):
        logger.addFilter(_DropTips())
    for message in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


def _represent_enums() -> None:
    """Let the saved ``config.yaml`` hold enum values (Lightning's ``Timer`` callback takes
    ``interval=Interval.step``, which YAML's safe dumper cannot represent): as their value."""
    import enum

    import yaml  # type: ignore[import-untyped]  # no stubs; jsonargparse dumps with it

    yaml.SafeDumper.add_multi_representer(
        enum.Enum, lambda dumper, value: dumper.represent_data(value.value)
    )


def run(args: Sequence[str]) -> int:
    """Run a Lightning subcommand (``fit``, ``validate`` or ``test`` and its options)."""
    quiet_lightning()
    _represent_enums()
    # LightningCLI reads ``args``. Lightning's DDP launcher starts the other ranks by running
    # ``sys.argv`` again, so it must hold this very command: ``gcrl fit ...``.
    saved, sys.argv = sys.argv, [sys.argv[0], *args]
    try:
        _cli(args)
    finally:
        sys.argv = saved
    return 0


def _cli(args: Sequence[str]) -> None:
    cli = GcrlCLI(
        GCRLModule,
        TrajectoryDataModule,
        subclass_mode_model=True,
        args=list(args),
        trainer_defaults=TRAINER_DEFAULTS,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
    )
    if args and args[0] == "fit":
        report_checkpoint(cli.trainer)


def report_checkpoint(trainer: Any) -> None:
    """After ``gcrl fit``: print where the last checkpoint was written (rank 0 only)."""
    callback = trainer.checkpoint_callback
    path = getattr(callback, "last_model_path", "") or getattr(callback, "best_model_path", "")
    if trainer.is_global_zero and path:
        print(f"checkpoint: {path}")
