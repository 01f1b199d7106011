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

Watch training runs; start, stop, resume, restart, compare and delete them; sample and chat with their
checkpoints. Training always runs as a separate `alm train` process: quitting the dashboard never stops or
corrupts it.

## Everywhere

| key | action |
|---|---|
| `ctrl+c` | **stop training safely**: the trainer finishes its step, saves `last.pt` and exits (status 130). In the Sample and Chat tabs it cancels the generation instead, never training |
| `n` | start a new run: model and train presets or files, a corpus config, `--set` overrides, steps, device |
| `r` | resume the selected/open run from `last.pt` (`alm resume NAME`) |
| `R` | restart it as a **new** run from its resolved config, with overrides you edit |
| `v` | view its resolved config (`alm runs config NAME`) |
| `d` | delete it, after asking (never while it trains; `alm runs delete NAME`) |
| `ctrl+p` | command palette (every action, open any run, change theme — remembered next time) |
| `?` / `f1` | this help |
| `q` / `ctrl+q` | quit (asks first if a run started here is still training: stop, detach or cancel) |

## Runs

`enter` opens the highlighted run, `space` marks runs and `c` compares the marked ones, `o` changes the sort,
`/` filters by words in the name, model or status (`esc` clears). Status comes from `events.jsonl` and whether
the trainer is alive: **running**, **finished**, **interrupted** (stopped with a checkpoint; resumable) or
**failed** (an error, NaN losses, or a trainer that vanished without saying why — see its Log tab).

## Compare

The table `alm runs compare` prints, and overlaid train loss and val bits per byte: `x` switches the x axis
(step, tokens, training time), `g` a log y axis, `z` the smoothing, `enter` opens a run, `esc` goes back.

## A run

`m` monitor (progress, ETA, loss, bpb, lr, tok/s, grad norm, epochs, memory, curves, events, training samples;
`x` cycles the big chart, `g` log y, `z` loss smoothing), `s` sample, `c` chat (fine-tuned chat models), `l` the
trainer's log. `esc` goes back one step: cancel a generation, leave a text box, the Monitor tab, the runs.

## Sampling

Every `alm sample` option is a knob; the line under them is the command they make. `p` puts the cursor in the
prompt; `enter` generates. The prompt also takes a whole command line, e.g.
`alm sample --prompt "ROMEO:" --temperature 0.7 --top-k 50 --seed 1`: its flags override the knobs (which then
show what it used). Up/down recall earlier prompts; `ctrl+c` cancels; `y` copies the output and `w` saves it
under `runs/NAME/samples/`. Sampling on the GPU a run is training on shares it (and slows training): pick
device `cpu` to avoid that.
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
