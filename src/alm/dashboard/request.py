"""A run to launch from the dashboard: what the new-run form collects, checked field by field with the loader
`alm train` itself uses (`alm.train.run_config.load_run_config`), and the `alm train` command line it becomes.

Torch-free (the form re-validates on every keystroke). A restart is a request whose base is an existing run: its
resolved config is the starting point, and the edited overrides go on top.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from alm.config import qualify_overrides, read_yaml
from alm.errors import AlmError, ConfigError, UsageError
from alm.format import count, scientific
from alm.rundir import RunDir

DEVICES = ("auto", "cpu", "cuda", "mps")
DEFAULT_MODEL = "micro"  # `alm train`'s default model and train preset (alm.train.run_config.DEFAULT_PRESET)
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Where a field's problem is shown in the form; "form" is anything not tied to one field.
FIELDS = ("model", "train", "data", "steps", "overrides", "device", "name", "form")


def model_presets() -> list[str]:
    from alm.model.presets import available_presets  # torch-free, like the dashboard

    return available_presets()


def train_presets() -> list[str]:
    from alm.train.config import PRESETS  # torch-free, like the dashboard

    return PRESETS.names()


@dataclass(frozen=True)
class TrainRequest:
    """A new run: presets or files for each section of its config, `--set` overrides, steps and device."""

    run: str
    model: str = DEFAULT_MODEL  # a preset name or a model config path
    steps: int | None = None  # None: the train config's
    device: str = "auto"
    train: str | None = None  # a train preset or file; None: `alm train`'s default
    data: str | None = None  # a corpus.yaml or data directory; None: the built-in corpus
    overrides: tuple[str, ...] = ()
    base: Path | None = None  # a restart: the run whose resolved config replaces model, train and data

    @property
    def sets(self) -> list[str]:
        """The `--set` items, steps last (a steps field wins over a train.steps override)."""
        steps = [f"train.steps={self.steps}"] if self.steps is not None else []
        return [*self.overrides, *steps]

    def config(self):
        """The run's config exactly as `alm train` (or, for a restart, `alm resume`) will load it."""
        from alm.train.run_config import load_run_config, run_config_from_dict

        if self.base is not None:
            source = RunDir(self.base).config_path
            sections = {k: v for k, v in read_yaml(source).items() if k in ("model", "train", "data")}
            return run_config_from_dict(sections, source=str(source), overrides=self.sets)
        return load_run_config(self.model, self.train, self.data, self.sets)

    def errors(self, runs_dir: Path, devices: tuple[str, ...] = DEVICES) -> dict[str, str]:
        """Every problem, keyed by the form field to show it under (FIELDS); empty when the request can run."""
        errors: dict[str, str] = {}
        if not _RUN_NAME.match(self.run):
            errors["name"] = (
                "invalid run name: use letters, digits, '.', '_' or '-' (no spaces or slashes)"
                if self.run
                else "the run needs a name"
            )
        elif RunDir(runs_dir / self.run).is_populated():
            errors["name"] = f"run {self.run!r} already exists in {runs_dir}: pick another name"
        if self.device not in devices and not ("cuda" in devices and re.fullmatch(r"cuda:\d+", self.device)):
            errors["device"] = f"unknown device {self.device!r}: this machine has {', '.join(devices)}"
        if self.steps is not None and self.steps <= 0:
            errors["steps"] = f"steps must be a positive integer, got {self.steps}"
        if self.base is None:
            errors.update(self._source_errors())
        try:
            qualify_overrides(self.overrides)
        except ConfigError as exc:
            errors["overrides"] = str(exc)
        if not errors.keys() & {"model", "train", "data", "steps", "overrides"}:
            try:
                self.config()
            except ConfigError as exc:
                errors[self._field_of(exc)] = str(exc)
            except AlmError as exc:
                errors["form"] = str(exc)
        return errors

    def _source_errors(self) -> dict[str, str]:
        from alm.data.settings import resolve_data_arg
        from alm.model.presets import PRESETS as MODEL_PRESETS
        from alm.train.config import PRESETS as TRAIN_PRESETS

        errors = {}
        for field, presets, value in (
            ("model", MODEL_PRESETS, self.model),
            ("train", TRAIN_PRESETS, self.train or DEFAULT_MODEL),
        ):
            try:
                presets.path(value)
            except UsageError:
                errors[field] = (
                    f"{field} {value!r} is neither a preset nor a file "
                    f"(presets: {', '.join(presets.names())}; or a {field} config .yaml)"
                )
        try:
            resolve_data_arg(self.data)
        except AlmError as exc:
            errors["data"] = exc.message
        return errors

    def _field_of(self, exc: ConfigError) -> str:
        """The form field a config error belongs to: where its value came from."""
        if exc.source == "--set":
            return "steps" if exc.key == "train.steps" and self.steps is not None else "overrides"
        section = exc.key.split(".", 1)[0]
        return section if self.base is None and section in ("model", "train", "data") else "form"

    def validate(self, runs_dir: Path, devices: tuple[str, ...] = DEVICES) -> None:
        """Raise the first problem (in form order) as a UsageError."""
        errors = self.errors(runs_dir, devices)
        for field in FIELDS:
            if field in errors:
                raise UsageError(errors[field])

    def command(self, runs_dir: Path) -> list[str]:
        """The `alm train` argv; for a restart this writes the base run's sections under the new run first."""
        from alm.dashboard.trainer import alm_argv

        model, train, data = self.model, self.train, self.data
        if self.base is not None:
            from alm.runs import write_restart_configs

            written = write_restart_configs(self.base, runs_dir / self.run)
            model, train, data = (str(written[s]) for s in ("model", "train", "data"))
        argv = [*alm_argv(), "train", "--model", model, "--run", self.run, "--runs-dir", str(runs_dir)]
        argv += ["--device", self.device]
        if train is not None:
            argv += ["--train", train]
        if data is not None:
            argv += ["--data", data]
        for item in self.sets:
            argv += ["--set", item]
        return argv


def plan_text(cfg) -> str:
    """What a valid request will train, defaults included, so nothing launches that the user did not see."""
    model, train = cfg.model, cfg.train
    seq_len = train.seq_len or model.max_seq_len
    per_step = train.batch_size * train.grad_accum * seq_len
    return (
        f"{model.n_layers} layers × d_model {model.d_model}, context {model.max_seq_len} · "
        f"{train.steps:,} steps × {per_step:,} tokens = {count(train.steps * per_step)} tokens · "
        f"lr {scientific(train.lr)} · data {_shown(Path(cfg.data.root))}"
    )


def _shown(path: Path) -> str:
    """A path as short as it can be said: relative to the working directory when it lies under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
