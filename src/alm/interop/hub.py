"""The Hugging Face Hub through `huggingface_hub`: downloading a model snapshot, uploading an export.

Credentials, cache and offline mode are huggingface_hub's own: `HF_TOKEN` (or `hf auth login`), `HF_HOME`,
`HF_HUB_OFFLINE=1`. Every Hub failure becomes an alm error that says what to do; nothing else is caught.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from alm.errors import AlmError, DataError, UsageError

MODEL_FILES = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
]
SAFETENSORS_FILES = ["model.safetensors", "model-*.safetensors", "model.safetensors.index.json"]
PYTORCH_FILES = ["pytorch_model.bin", "pytorch_model-*.bin", "pytorch_model.bin.index.json"]
TOKEN_HINT = (
    "set HF_TOKEN to a token with write access (huggingface.co/settings/tokens), or run `hf auth login`"
)


def is_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _is_network_error(exc: BaseException) -> bool:
    """Connection failures: OSError (requests, older huggingface_hub) or the HTTP client's own errors (httpx,
    or the `httpx2` huggingface_hub 1.x+ ships)."""
    clients = ("httpx", "requests", "urllib3")
    return isinstance(exc, OSError) or any(c.__module__.startswith(clients) for c in type(exc).__mro__)


@contextlib.contextmanager
def hub_errors(action: str, repo_id: str) -> Iterator[None]:
    """Turn huggingface_hub's exceptions raised while doing `action` into messages with a way forward."""
    from huggingface_hub import errors

    try:
        yield
    except errors.HFValidationError as exc:
        raise UsageError(f"{repo_id!r} is not a Hub repo id ({exc})", hint="use owner/name") from None
    except (errors.OfflineModeIsEnabled, errors.LocalEntryNotFoundError):
        why = "HF_HUB_OFFLINE=1 is set" if is_offline() else "the Hub could not be reached"
        raise DataError(
            f"cannot {action}: {repo_id} is not in the local Hugging Face cache and {why}",
            hint="download it once with network access (HF_HUB_OFFLINE unset), or pass a local directory",
        ) from None
    except errors.GatedRepoError:
        raise AlmError(
            f"cannot {action}: {repo_id} is gated", hint="accept its terms on huggingface.co and set HF_TOKEN"
        ) from None
    except errors.RepositoryNotFoundError:
        raise UsageError(
            f"cannot {action}: no model repo {repo_id} on the Hub (or it is private)",
            hint="check the id; a private repo needs HF_TOKEN",
        ) from None
    except errors.RevisionNotFoundError:
        raise UsageError(
            f"cannot {action}: {repo_id} has no such revision", hint="check --revision"
        ) from None
    except errors.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            raise AlmError(
                f"cannot {action}: the Hub refused the token ({status})", hint=TOKEN_HINT
            ) from None
        raise AlmError(f"cannot {action}: {str(exc).splitlines()[0]}") from None
    except Exception as exc:
        if not _is_network_error(exc):
            raise
        raise AlmError(
            f"cannot {action}: the Hub could not be reached ({type(exc).__name__}: {exc})",
            hint="check the network (and HF_ENDPOINT if set), then try again",
        ) from None


def download_model(repo_id: str, revision: str | None = None) -> Path:
    """The snapshot directory (in the Hugging Face cache) holding the model's config, tokenizer and weights;
    safetensors when the repo has them, else pytorch_model*.bin."""
    from huggingface_hub import snapshot_download

    with hub_errors("download the model", repo_id):
        path = Path(
            snapshot_download(repo_id, revision=revision, allow_patterns=MODEL_FILES + SAFETENSORS_FILES)
        )
        if not any(path.glob("*.safetensors")):
            path = Path(
                snapshot_download(repo_id, revision=revision, allow_patterns=MODEL_FILES + PYTORCH_FILES)
            )
    return path


def check_can_upload(repo_id: str) -> str:
    """The token to upload with; refuses a malformed repo id, a missing token or offline mode up front."""
    from huggingface_hub import get_token
    from huggingface_hub.utils import validate_repo_id

    with hub_errors("push", repo_id):
        validate_repo_id(repo_id)
    token = get_token()
    if not token:
        raise UsageError("no Hugging Face token to push with", hint=TOKEN_HINT)
    if is_offline():
        raise AlmError("cannot push: HF_HUB_OFFLINE=1 is set", hint="unset HF_HUB_OFFLINE to reach the Hub")
    return token


def upload(path: Path, repo_id: str, *, token: str, private: bool, message: str) -> str:
    """Create the model repo if needed and upload `path` (a directory's files, or one file); the repo URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    with hub_errors("push", repo_id):
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if path.is_dir():
            api.upload_folder(repo_id=url.repo_id, folder_path=path, commit_message=message)
        else:
            api.upload_file(
                path_or_fileobj=str(path), path_in_repo=path.name, repo_id=url.repo_id, commit_message=message
            )
    return str(url)


__all__ = ["check_can_upload", "download_model", "hub_errors", "is_offline", "upload"]
