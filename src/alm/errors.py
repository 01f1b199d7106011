"""Expected failures: each carries the exit code the CLI returns (2 usage/config, 1 runtime, 130 stopped)."""

from __future__ import annotations


class AlmError(Exception):
    """An expected failure with a message meant for the user (no traceback)."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class UsageError(AlmError):
    """Bad arguments or bad input named by the user: exit 2."""

    exit_code = 2


class ConfigError(UsageError):
    """An invalid configuration value; names the key and, when known, the file."""

    def __init__(self, key: str, message: str, *, source: str | None = None, hint: str | None = None):
        where = f" (in {source})" if source else ""
        super().__init__(f"config key '{key}'{where}: {message}", hint=hint)
        self.key = key
        self.detail = message
        self.source = source


class DataError(AlmError):
    """Corrupt, missing or incompatible data on disk (shards, manifests, checkpoints): exit 1."""


class Interrupted(AlmError):
    """The user stopped the work (Ctrl+C / SIGTERM): exit 130."""

    exit_code = 130
