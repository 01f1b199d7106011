"""`alm export` (Hugging Face / GGUF), `alm import hf` and `alm push`: models that leave alm and come in."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from alm.cli.common import console, err_console, handle_errors
from alm.cli.help import examples
from alm.cli.sample import CheckpointOption, RunArgument, resolve_checkpoint_arg

if TYPE_CHECKING:
    from alm.interop.export import ExportOptions, ExportResult

FormatOption = Annotated[
    str,
    typer.Option("--format", "-f", help="hf (transformers, mlx-lm) or gguf (llama.cpp, LM Studio, Ollama)."),
]
DtypeOption = Annotated[str, typer.Option("--dtype", help="Weights: fp32, fp16 or bf16.")]
QuantizeOption = Annotated[
    str | None, typer.Option("--quantize", help="GGUF only: q8_0 for 8-bit weight matrices.")
]
LicenseOption = Annotated[
    str, typer.Option("--license", help="Licence id for the model card / GGUF metadata, e.g. mit.")
]

import_app = typer.Typer(help="Bring a model into alm as a run directory.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command(
        "export",
        rich_help_panel="Share",
        epilog=examples(
            "alm export demo  # -> exports/demo-hf/ for transformers and mlx-lm",
            "alm export demo --format gguf --quantize q8_0  # for llama.cpp",
            "alm export demo --checkpoint last --out my-model --force",
        ),
    )(export)
    app.add_typer(import_app, name="import", rich_help_panel="Share")
    app.command(
        "push",
        rich_help_panel="Share",
        epilog=examples(
            "alm push demo your-name/alm-demo --private",
            "alm push demo your-name/alm-demo-gguf --format gguf --quantize q8_0",
        ),
    )(push)


def _progress(message: str) -> None:
    err_console.print(f"[dim]{message}…[/]", soft_wrap=True, markup=True, highlight=False)


def _options(fmt: str, dtype: str, quantize: str | None, license: str) -> ExportOptions:
    from alm.interop.export import ExportOptions

    options = ExportOptions(format=fmt, dtype=dtype, quantize=quantize, license=license)
    options.validate()
    return options


def _files(result: ExportResult) -> None:
    from alm.format import count

    for name, size in result.files:
        console.print(f"  {name:<26} {count(size) + 'B':>8}", markup=False)


def _summary(result: ExportResult) -> None:
    source, options = result.source, result.options
    console.print(
        f"[green]exported[/] {source.name} (step {source.step}) as {result.architecture}, {options.label} "
        f"-> {result.path}",
        soft_wrap=True,
    )
    _files(result)
    where = shlex.quote(str(result.path))
    console.print("run it:")
    if options.format == "hf":
        snippet = f"print(pipeline('text-generation', {str(result.path)!r})('ROMEO:')[0]['generated_text'])"
        mlx = f"mlx_lm.generate --model {where} --prompt 'ROMEO:' --ignore-chat-template"
        for command in (f'python -c "from transformers import pipeline; {snippet}"', mlx):
            console.print(f"  {command}", markup=False, soft_wrap=True)  # one line, to copy
    else:
        console.print(f"  llama-cli -m {where} -p 'ROMEO:' -n 64", markup=False, soft_wrap=True)


@handle_errors
def export(
    run: RunArgument,
    fmt: FormatOption = "hf",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="hf: the directory; gguf: a .gguf file or a directory for it. Default: exports/RUN-hf, exports/RUN-TYPE.gguf.",
        ),
    ] = None,
    dtype: DtypeOption = "fp32",
    quantize: QuantizeOption = None,
    license: LicenseOption = "other",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out.")] = False,
    checkpoint: CheckpointOption = None,
) -> None:
    """Export a trained run for transformers and mlx-lm (--format hf) or llama.cpp (--format gguf)."""
    from alm.interop.export import export_checkpoint

    options = _options(fmt, dtype, quantize, license)
    path = resolve_checkpoint_arg(run, checkpoint)
    result = export_checkpoint(path, options, out, force=force, progress=_progress)
    _summary(result)


@import_app.command(
    "hf",
    epilog=examples(
        "alm import hf exports/demo-hf --run demo-again",
        "alm import hf HuggingFaceTB/SmolLM2-135M --run smollm  # from the Hub",
    ),
)
@handle_errors
def import_hf(
    source: Annotated[
        str,
        typer.Argument(
            metavar="SOURCE", help="A Hugging Face model directory, or a Hub repo id (owner/name)."
        ),
    ],
    run: Annotated[str, typer.Option("--run", "-r", help="Name of the run to create (under --runs-dir).")],
    revision: Annotated[
        str | None, typer.Option("--revision", help="Hub branch, tag or commit (repo ids only).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing run of that name.")] = False,
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="Where runs live.")] = Path("runs"),
) -> None:
    """Make a run from a Hugging Face Llama or GPT-2 model: alm sample, eval and export then work on it.

    Hub downloads honour HF_TOKEN, HF_HOME and HF_HUB_OFFLINE=1 (then only the local cache is used).
    """
    from alm.format import count
    from alm.interop.hf_import import import_hf as run_import

    result = run_import(source, run, runs_root=runs_dir, revision=revision, force=force, progress=_progress)
    console.print(
        f"[green]imported[/] {result.source} ({result.model_type}, {count(result.params)} parameters, "
        f"vocab {result.vocab_size:,}) -> {result.run.path}",
        soft_wrap=True,
    )
    roles = ", ".join(f"{role} {token} = {i}" for role, (token, i) in result.roles.items())
    console.print(f"  special tokens  {roles}", markup=False, soft_wrap=True)
    ref = shlex.quote(str(result.run.path) if runs_dir != Path("runs") else result.run.name)
    console.print("next:")
    console.print(f"  alm sample {ref} --prompt 'Once upon a time' --greedy", markup=False)
    console.print(f"  alm export {ref} --format gguf", markup=False)
    console.print(f"  alm train --init-from {ref} --data CORPUS.yaml   # continue pretraining", markup=False)


@handle_errors
def push(
    run: RunArgument,
    repo_id: Annotated[str, typer.Argument(metavar="REPO_ID", help="The Hub model repo: owner/name.")],
    private: Annotated[bool, typer.Option("--private", help="Create the repo private.")] = False,
    fmt: FormatOption = "hf",
    dtype: DtypeOption = "fp32",
    quantize: QuantizeOption = None,
    license: LicenseOption = "other",
    checkpoint: CheckpointOption = None,
) -> None:
    """Export a run and upload it to the Hugging Face Hub (needs HF_TOKEN or `hf auth login`).

    The export is built in a temporary directory and removed afterwards, whether the upload worked or not.
    """
    from alm.interop.push import push_checkpoint

    options = _options(fmt, dtype, quantize, license)
    path = resolve_checkpoint_arg(run, checkpoint)
    result = push_checkpoint(path, repo_id, options, private=private, progress=_progress)
    export = result.export
    console.print(
        f"[green]pushed[/] {export.source.name} (step {export.source.step}) as {export.architecture}, "
        f"{options.label} -> {result.url}",
        soft_wrap=True,
    )
    _files(export)
