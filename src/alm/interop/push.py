"""`alm push`: export a checkpoint into a temporary directory and upload it to a Hub model repo.

The token, the repo id and offline mode are checked before anything is exported; the export lives only in a
temporary directory that is removed whatever happens, so a failed push leaves nothing behind locally.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from alm.interop.export import ExportOptions, ExportResult, Progress, default_output, export_checkpoint
from alm.interop.hub import check_can_upload, upload


@dataclass(frozen=True)
class PushResult:
    url: str
    export: ExportResult


def push_checkpoint(
    checkpoint: Path,
    repo_id: str,
    options: ExportOptions,
    *,
    private: bool = False,
    progress: Progress | None = None,
) -> PushResult:
    say = progress or (lambda _message: None)
    options.validate()
    token = check_can_upload(repo_id)
    with tempfile.TemporaryDirectory(prefix="alm-push-") as tmp:
        out = default_output(repo_id.split("/")[-1], options, root=Path(tmp))
        result = export_checkpoint(checkpoint, options, out, location=repo_id, progress=say)
        say(f"uploading to {repo_id}")
        message = f"alm export of {result.source.name} (step {result.source.step}, {options.label})"
        url = upload(result.path, repo_id, token=token, private=private, message=message)
    return PushResult(url, result)


__all__ = ["PushResult", "push_checkpoint"]
