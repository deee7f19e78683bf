"""The small exception hierarchy shared by the CLI, the library and (later) the service."""

from __future__ import annotations


class LsrError(Exception):
    """Base class for every error the user can fix by changing input, config or paths."""


class ConfigError(LsrError, ValueError):
    """A configuration file, key or value is invalid."""


class DataFormatError(LsrError, ValueError):
    """An input file is malformed. The message names the file and line."""


class DatasetUnavailableError(LsrError):
    """A dataset could not be loaded (for example an ``ir_datasets`` id while offline)."""


class IndexLockedError(LsrError):
    """Another writer holds a live index's write lock (the message names its pid)."""


class VocabularyMismatchError(LsrError, ValueError):
    """Vectors over another vocabulary than the index's (another encoder, or new terms for a fixed one)."""


def __getattr__(name: str) -> type[Exception]:
    """``ArtifactError`` and ``CorruptArtifactError`` (a damaged file: ``path``, ``problem``) live in
    lsr.index.io, which cannot import this module; imported on first use, so ``import lsr.errors`` stays
    free of numpy."""
    if name in ("ArtifactError", "CorruptArtifactError"):
        from lsr.index import io

        return getattr(io, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
