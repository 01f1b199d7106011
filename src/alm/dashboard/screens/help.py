"""The help screen: what each view shows and every key."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# alm dashboard

Watch training runs, start, stop and resume them, and sample their checkpoints. Training always runs as a
separate `alm train` process: quitting the dashboard never stops or corrupts it.

## Everywhere

| key | action |
|---|---|
| `ctrl+c` | **stop training safely**: the trainer finishes its step, saves `last.pt` and exits (status 130) |
| `n` | start a new run (model preset or config file, name, steps, device) |
| `r` | resume the selected/open run (`alm resume NAME`) |
| `ctrl+p` | command palette (every action, open any run, change theme) |
| `?` / `f1` | this help |
| `q` / `ctrl+q` | quit (asks first if a run started here is still training: stop, detach or cancel) |

## Runs

`enter` opens the highlighted run. Status comes from `events.jsonl` and whether the trainer's pid is alive:
**running**, **finished**, **interrupted** (stopped with a checkpoint; resumable) or **failed** (an error, NaN
losses, or a trainer that vanished without saying why — see its Log tab).

## A run

`m` monitor (progress, ETA, loss, lr, tok/s, grad norm, router balance, curves, events, training samples),
`s` sample, `l` the trainer's log, `escape` back to the runs (or cancels a running sample).

## Sampling

Pick a checkpoint, set temperature / top-k / top-p / max tokens and type a prompt, then `enter`. Or type a whole
command line, e.g. `alm sample --prompt "ROMEO:" --temperature 0.7 --top-k 50 --seed 1` — the options are the
same as the CLI's. One sample runs at a time; `escape` cancels it. Sampling on the GPU a run is training on
shares it (and slows training): pick device `cpu` to avoid that.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Close"),
        Binding("q", "dismiss", "Close", show=False),
        Binding("question_mark", "dismiss", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-dialog", classes="dialog"):
            yield Markdown(HELP)
