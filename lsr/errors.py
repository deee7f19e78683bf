"""The small exception hierarchy shared by the CLI, the library and (later) the service."""

from __future__ import annotations

# Damaged or foreign artifacts: raised by lsr.index (which cannot import this module), re-exported here.
from lsr.index.io import ArtifactError, CorruptArtifactError

__all__ = [
    "ArtifactError",
    "ConfigError",
    "CorruptArtifactError",
    "DataFormatError",
    "DatasetUnavailableError",
    "IndexLockedError",
    "LsrError",
    "VocabularyMismatchError",
]


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
