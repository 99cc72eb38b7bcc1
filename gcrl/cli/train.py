"""``gcrl fit | validate | test --config CONFIG.yaml``: LightningCLI over gcrl's algorithms.

The model is any :class:`gcrl.algorithms.Agent` subclass (``model.class_path``), trained
through the one Lightning adapter :class:`gcrl.learner.AgentModule`; the data is a
:class:`gcrl.training.TrajectoryDataModule`, whose shapes and tasks (``data.spec``) are
linked into the model when both are built. Logs (CSV and TensorBoard) and
checkpoints go under ``runs/`` (``runs/csv/version_N/`` holds ``metrics.csv``, the
config and ``checkpoints/``) unless the config says otherwise.
"""

from __future__ import annotations

import contextlib
import io
import logging
import signal
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from lightning.pytorch.callbacks import Callback, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from gcrl.algorithms.agent import Agent, networks_of_version
from gcrl.callbacks import InterruptCheckpoint, StepProgressBar, StepRate
from gcrl.errors import ConfigError, DataError, GcrlError
from gcrl.learner.module import AgentModule, class_path
from gcrl.spec import CHECKPOINT_KEY, NETWORKS_VERSION, InputSpec, networks_version_of
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


#: ``ckpt_path`` values Lightning resolves itself (not file paths).
_LIGHTNING_CKPT_NAMES = ("last", "best", "hpc")
#: The spec fields a checkpoint's networks are sized by.
_SHAPE_FIELDS = ("observation_dim", "action_dim", "discrete", "goal_dim", "num_tasks")


def help_epilog() -> str:
    """The last lines of ``gcrl fit --help``: the registered algorithms
    (:data:`gcrl.algorithms.ALGORITHMS`) and where each one's options are."""
    from gcrl.algorithms import ALGORITHMS

    names = ", ".join(cls.__name__ for cls in ALGORITHMS)
    return (
        f"Algorithms (model.class_path gcrl.algorithms.NAME): {names}. Each one's own "
        "options: gcrl fit --model.help gcrl.algorithms.BC (or another). Optimisers are the "
        "algorithms' own (Adam at model.learning_rate, or per parameter group). --verbose: "
        "Lightning's device lines and model summary too."
    )


class GcrlCLI(LightningCLI):
    """LightningCLI in subclass mode, with the data spec linked into the model, and
    ``--ckpt_path`` checked before Lightning reads it."""

    #: ``gcrl fit``'s interrupt handling (what stopped the run, the checkpoint it wrote).
    interrupt: InterruptCheckpoint

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # Only the subcommands gcrl routes here: no ``predict`` (an algorithm has no
        # ``predict_step``).
        return {k: v for k, v in LightningCLI.subcommands().items() if k in SUBCOMMANDS}

    def add_core_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # As Lightning's, with the model an Agent (plain torch) rather than a LightningModule:
        # instantiate_classes wraps it in the adapter.
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        defaults = {"trainer." + k: v for k, v in self.trainer_defaults.items() if k != "callbacks"}
        parser.set_defaults(defaults)
        parser.add_subclass_arguments(Agent, "model", fail_untyped=False, required=True)
        parser.add_lightning_class_args(self._datamodule_class, "data", subclass_mode=False)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.spec", "model.init_args.spec", apply_on="instantiate")

    def instantiate_classes(self) -> None:
        # A resumed checkpoint's networks are built as its networks version built them.
        meta = getattr(self, "_resumed_meta", None)
        version = NETWORKS_VERSION if meta is None else networks_version_of(meta)
        with networks_of_version(version):
            self.config_init = self.parser.instantiate_classes(self.config)
        self.datamodule = self._get(self.config_init, "data")
        self.model = AgentModule(self._get(self.config_init, "model"))
        self.trainer = self.instantiate_trainer()

    def _parse_ckpt_path(self) -> None:
        """As Lightning's (the model's options come from the checkpoint's hyperparameters),
        after checking the file, and with the class from gcrl's metadata when the
        hyperparameters do not name it (checkpoints of models built in Python)."""
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        checkpoint = read_resumable(path)
        if checkpoint is None:
            super()._parse_ckpt_path()
            return
        # Read once here; before_fit checks the model against the same metadata.
        self._resumed_meta: dict[str, Any] | None = checkpoint[CHECKPOINT_KEY]
        hparams = dict(checkpoint.get("hyper_parameters", {}))
        hparams.pop("_instantiator", None)
        class_path = hparams.pop("_class_path", None) or self._resumed_meta["algorithm"]
        model = {"class_path": class_path, "dict_kwargs": hparams}
        errors = io.StringIO()
        try:
            with contextlib.redirect_stderr(errors):  # jsonargparse prints its usage
                self.config = self.parser.parse_object({subcommand: {"model": model}}, self.config)
        except SystemExit:
            raise ConfigError(
                f"--ckpt_path {path}: a checkpoint of {class_path} whose options do not fit it "
                f"({innermost_error(errors.getvalue())})"
            ) from None

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Any:
        # gcrl's progress bar, unless the run has none or brings its own: Lightning's reads
        # "Epoch 1/-2" when, as in step-budgeted runs, epochs are unbounded.
        given = config.get("callbacks") or []
        given = given if isinstance(given, list) else [given]
        bars = [c for c in [*given, *callbacks] if isinstance(c, ProgressBar)]
        if config.get("enable_progress_bar") is not False and not bars:
            callbacks = [*callbacks, StepProgressBar()]
        # The training rate in the logs, as OGBench logs it (unless the run brings its own).
        if not any(isinstance(c, StepRate) for c in [*given, *callbacks]):
            callbacks = [*callbacks, StepRate()]
        if self.subcommand == "fit":  # SIGINT / SIGTERM: a checkpoint to resume from
            self.interrupt = InterruptCheckpoint()
            callbacks = [*callbacks, self.interrupt]
        return super()._instantiate_trainer(config, callbacks)

    def before_fit(self) -> None:
        meta = getattr(self, "_resumed_meta", None)
        if meta is not None:
            check_resumable(self.config[self.subcommand].get("ckpt_path"), meta, self.model)

    before_validate = before_test = before_fit


def read_resumable(path: str | None) -> dict[str, Any] | None:
    """The ``--ckpt_path`` checkpoint, read with ``weights_only`` (None for no path, or a name
    that Lightning resolves such as ``last``); a one-line error for a missing or truncated
    file, another program's checkpoint or one without weights, where Lightning's own errors
    are tracebacks (``KeyError: 'pytorch-lightning_version'``)."""
    if path is None or path in _LIGHTNING_CKPT_NAMES or str(path).startswith("registry"):
        return None
    from gcrl.policy import read_checkpoint

    try:
        return read_checkpoint(path)
    except GcrlError as err:
        message = str(err).removeprefix(f"{path}: ")
        raise type(err)(f"--ckpt_path {path}: {message}") from None


def check_resumable(path: str, meta: dict[str, Any], model: AgentModule) -> None:
    """Raise a one-line error unless the ``--ckpt_path`` checkpoint at ``path``, whose gcrl
    metadata is ``meta``, is of ``model``'s agent class and of networks sized for the same
    data."""

    option = f"--ckpt_path {path}"
    expected = class_path(type(model.agent))
    if meta.get("algorithm") != expected:
        raise ConfigError(
            f"{option}: a checkpoint of {meta.get('algorithm')}, but the model is {expected}"
        )
    trained = InputSpec.from_dict(meta["spec"])
    for name in _SHAPE_FIELDS:
        if getattr(trained, name) != getattr(model.agent.spec, name):
            raise DataError(
                f"{option}: trained with {name} {getattr(trained, name)}, but the data "
                f"gives {getattr(model.agent.spec, name)}"
            )


#: Lightning messages that say nothing about the run: advertisements, a deprecation inside
#: Lightning itself, and the empty validation loader of runs without a validation split.
HARMLESS_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated",
    r"Total length of `FixedBatches` across ranks is zero",
    # sys.argv holds the command for Lightning's DDP launcher, and LightningCLI reads args.
    r"LightningCLI's args parameter is intended to run from within Python",
)


#: Lightning's log lines that say nothing about the run: advertisements, and the seed that
#: the saved config records anyway (it came before a one-line error, making it two).
HARMLESS_LOGS = ("💡 Tip", "Seed set to ")
#: Lightning's lines shown only with ``--verbose``: the devices it found and the end of the
#: step budget (the model summary table is off unless ``--verbose`` or the config turns it on).
VERBOSE_LOGS = ("GPU available:", "TPU available:", "HPU available:", "LOCAL_RANK:", "` stopped: ")
#: The loggers writing them.
_LIGHTNING_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.seed")
#: The option of ``gcrl fit | validate | test`` that shows Lightning's own lines.
VERBOSE = "--verbose"


class _DropTips(logging.Filter):
    def __init__(self, dropped: tuple[str, ...]) -> None:
        super().__init__()
        self.dropped = dropped

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)  # under DDP prefixed by "[rank: N] "
        return not any(harmless in message for harmless in self.dropped)


def quiet_lightning(verbose: bool = False) -> None:
    """Silence Lightning's tips, its seed line and the known-harmless warnings, and unless
    ``verbose`` its device and stopping lines (the last call decides)."""
    dropped = HARMLESS_LOGS if verbose else (*HARMLESS_LOGS, *VERBOSE_LOGS)
    for name in _LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, _DropTips)]:
            logger.removeFilter(old)
        logger.addFilter(_DropTips(dropped))
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
    """Run a Lightning subcommand (``fit``, ``validate`` or ``test`` and its options; with
    ``--verbose``, Lightning's device lines and model summary are shown too)."""
    verbose = VERBOSE in args
    quiet_lightning(verbose)
    _represent_enums()
    # LightningCLI reads ``args``. Lightning's DDP launcher starts the other ranks by running
    # ``sys.argv`` again, so it must hold this very command: ``gcrl fit ...``.
    saved, sys.argv = sys.argv, [sys.argv[0], *args]
    try:
        return _cli([a for a in args if a != VERBOSE], verbose)
    finally:
        sys.argv = saved


def _cli(args: Sequence[str], verbose: bool = False) -> int:
    """Run LightningCLI; returns the exit code (128 + the signal for an interrupted fit)."""
    fitting = not args or args[0] == "fit"
    defaults = {**TRAINER_DEFAULTS, "enable_model_summary": verbose}
    cli = GcrlCLI(
        None,
        TrajectoryDataModule,
        args=list(args),
        # validate and test print their metrics; they make no new run directory (a logger
        # given on the command line still logs them).
        trainer_defaults=defaults if fitting else {**defaults, "logger": False},
        seed_everything_default=0,
        save_config_callback=SaveConfigCallback if fitting else None,
        save_config_kwargs={"overwrite": True},
        # The algorithms configure their optimiser themselves (compiled steps, PCGrad and
        # GradNorm need to): an --optimizer option would silently replace it.
        auto_configure_optimizers=False,
        parser_kwargs={name: {"epilog": help_epilog()} for name in SUBCOMMANDS},
    )
    if not (args and args[0] == "fit"):
        return 0
    interrupt = cli.interrupt
    if interrupt.signal is not None and interrupt.path is not None:
        name = signal.Signals(interrupt.signal).name
        print(
            f"gcrl fit: interrupted ({name}) after step {cli.trainer.global_step}; resume with "
            f"--ckpt_path {interrupt.path}",
            file=sys.stderr,
        )
        return 128 + interrupt.signal
    report_checkpoint(cli.trainer)
    return 0


def report_checkpoint(trainer: Any) -> None:
    """After ``gcrl fit``: print where the last checkpoint was written (rank 0 only)."""
    callback = trainer.checkpoint_callback
    path = getattr(callback, "last_model_path", "") or getattr(callback, "best_model_path", "")
    if trainer.is_global_zero and path:
        print(f"checkpoint: {path}")


def innermost_error(message: str) -> str:
    """The first error jsonargparse collected (its other lines say which types it tried)."""
    for line in message.splitlines():
        line = line.strip()
        if line.startswith("- ") and not line.startswith("- Expected a <class 'NoneType'>"):
            return line[2:]
    return message.strip().splitlines()[0] if message.strip() else "invalid configuration"
