"""`alm export`: one checkpoint of a run -> a Hugging Face directory or a GGUF file, verified before writing.

Everything that can be refused (options, an occupied --out, an architecture or tokenizer the format cannot
express) is refused before anything is written; the output is built in a temp sibling and renamed into place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from alm.errors import UsageError
from alm.interop.card import DEFAULT_LICENSE
from alm.interop.output import Kind, check_target, staged
from alm.interop.source import ExportSource, load_export_source

Format = Literal["hf", "gguf"]
Dtype = Literal["fp32", "fp16", "bf16"]
Quantize = Literal["q8_0"]
DEFAULT_EXPORT_ROOT = Path("exports")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ExportOptions:
    format: str = "hf"
    dtype: str = "fp32"
    quantize: str | None = None
    license: str = DEFAULT_LICENSE

    def validate(self) -> None:
        for flag, value, choices in (
            ("--format", self.format, get_args(Format)),
            ("--dtype", self.dtype, get_args(Dtype)),
        ):
            if value not in choices:
                raise UsageError(f"{flag} {value}: unknown", hint=f"use one of {', '.join(choices)}")
        if self.quantize is not None:
            if self.format != "gguf":
                raise UsageError("--quantize applies to --format gguf only", hint="add --format gguf")
            if self.quantize not in get_args(Quantize):
                raise UsageError(f"--quantize {self.quantize}: unknown", hint="use q8_0")
        if not self.license.strip():
            raise UsageError("--license is empty", hint="give a Hub licence id such as mit or apache-2.0")

    @property
    def kind(self) -> Kind:
        return "directory" if self.format == "hf" else "file"

    @property
    def label(self) -> str:
        """How the weights are stored: fp32, fp16, bf16 or q8_0 (GGUF names f32/f16 files so)."""
        if self.format == "hf":
            return self.dtype
        return self.quantize or self.dtype.replace("fp", "f")


@dataclass(frozen=True)
class ExportResult:
    path: Path
    files: list[tuple[str, int]]  # (name, bytes) of each file written
    architecture: str
    options: ExportOptions
    source: ExportSource


def default_output(run_name: str, options: ExportOptions, root: Path = DEFAULT_EXPORT_ROOT) -> Path:
    """exports/NAME-hf/ or exports/NAME-f32.gguf (the file named by its type, as llama.cpp's files are)."""
    return root / (f"{run_name}-hf" if options.format == "hf" else f"{run_name}-{options.label}.gguf")


def resolve_output(out: Path | None, run_name: str, options: ExportOptions) -> Path:
    """--out as given; for a GGUF, an --out not ending in .gguf is the directory the default file name goes in."""
    if out is None:
        return default_output(run_name, options)
    if options.format == "gguf" and out.suffix != ".gguf":
        return default_output(run_name, options, root=out)
    return out


def check_exportable(source: ExportSource, options: ExportOptions) -> str:
    """The architecture the export will declare; a UsageError for anything the format cannot express."""
    from alm.interop.gguf_export import GGUF_ARCH, check_gguf_exportable
    from alm.model.hf import hf_target

    if options.format == "gguf":
        check_gguf_exportable(source)
        return GGUF_ARCH
    return hf_target(source.model.config).architecture


def export_checkpoint(
    checkpoint: Path,
    options: ExportOptions,
    out: Path | None = None,
    *,
    force: bool = False,
    location: str | None = None,
    progress: Progress | None = None,
) -> ExportResult:
    """Export `checkpoint` (inside runs/NAME/checkpoints/) as `options` says; `location` is what the model card
    tells readers to load (the output path unless given, e.g. a Hub repo id)."""
    from alm.interop.gguf_export import write_gguf_file
    from alm.interop.hf_export import write_hf_directory
    from alm.train.checkpoint import run_dir_of_checkpoint

    say = progress or (lambda _message: None)
    options.validate()
    target = resolve_output(out, run_dir_of_checkpoint(checkpoint).name, options)
    check_target(target, options.kind, force=force)
    say(f"loading {checkpoint}")
    source = load_export_source(checkpoint)
    architecture = check_exportable(source, options)
    say(f"writing {architecture} ({options.label}) to {target}")
    with staged(target, options.kind, force=force) as tmp:
        if options.format == "hf":
            where = location or str(target)
            written = write_hf_directory(
                source, tmp, dtype=options.dtype, license=options.license, location=where
            )
        else:
            write_gguf_file(
                source, tmp, dtype=options.dtype, quantize=options.quantize, license=options.license
            )
            written = [tmp]
        files = [(target.name if p == tmp else p.name, p.stat().st_size) for p in written]
    return ExportResult(target, files, architecture, options, source)


__all__ = [
    "DEFAULT_EXPORT_ROOT",
    "Dtype",
    "ExportOptions",
    "ExportResult",
    "Format",
    "Quantize",
    "default_output",
    "export_checkpoint",
    "resolve_output",
]
