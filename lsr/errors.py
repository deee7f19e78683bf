"""The small exception hierarchy shared by the CLI, the library and (later) the service."""

from __future__ import annotations

import contextlib
import errno
import functools
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


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


class DiskFullError(LsrError):
    """A write failed for lack of space (ENOSPC, EDQUOT) or past the file-size limit (EFBIG); the
    message names the artifact, and nothing of it was published."""

    def __init__(self, out: str | Path, reason: str, file: str | None):
        self.reason, self.file = reason, file
        where = f" ({file})" if file else ""
        super().__init__(
            f"writing {out} failed: {reason}{where}; nothing was published at {out} (an existing one is "
            "unchanged): free some space and run the command again"
        )


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@contextlib.contextmanager
def disk_full_as_error(out: str | Path) -> Iterator[None]:
    """Turn a full disk (or the file-size limit) while writing ``out`` into a :class:`DiskFullError`
    naming ``out`` (the outermost artifact, when writers nest) and the file that failed; the writers
    under it remove their temporary files and leave the previous ``out`` as it was."""
    try:
        yield
    except DiskFullError as exc:
        raise DiskFullError(out, exc.reason, exc.file) from None
    except OSError as exc:
        if exc.errno not in DISK_FULL_ERRNOS:
            raise
        limit = exc.errno == errno.EFBIG
        reason = "the file-size limit (ulimit -f)" if limit else "no space left on the device"
        raise DiskFullError(out, reason, exc.filename) from None


def reports_disk_full(fn: F) -> F:
    """Decorate a function that writes the artifact named by its ``out`` argument: a full disk inside
    it becomes a :class:`DiskFullError` naming ``out`` (:func:`disk_full_as_error`)."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        out = signature.bind(*args, **kwargs).arguments["out"]
        with disk_full_as_error(out):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
