"""Find the log files under the log directory and read them as lines of bytes.

Gzip is detected from the first two bytes of a file (1f 8b), not from its name, so rotated
files such as `access.log.1`, `access.log.2.gz` and a gzip file without `.gz` are all
read. A damaged gzip stream ends the file with `SourceReadError`, after every line that
was read before the damage.
"""

from __future__ import annotations

import fnmatch
import gzip
import logging
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
ACCESS_LOG = "access_log"
JSONL = "jsonl"


@dataclass(frozen=True)
class LogFile:
    """One input file: where it is, how it is named in outputs, and how to read it."""

    path: Path
    # Parent directory name and file name, e.g. "access_logs/semicomplete-2015-05.log".
    source: str
    # ACCESS_LOG or JSONL.
    format: str
    # True when the file starts with the gzip magic bytes.
    compressed: bool


class SourceReadError(Exception):
    """A file that stopped before its end, such as a truncated or corrupt gzip stream.

    `reason` is "truncated_gzip", "corrupt_gzip" or "read_failed". `partial_line` contains
    the bytes after the last complete line, which the stream cut short (often empty).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.partial_line = b""


def discover_log_files(log_dir: Path, log_globs: Sequence[str], jsonl_globs: Sequence[str]) -> list[LogFile]:
    """List the files in `log_dir` that match `log_globs`, sorted and without duplicates.

    A file whose name matches one of `jsonl_globs` is JSON lines, and any other file is an
    access log. Directories are skipped. Raises FileNotFoundError when `log_dir` is
    missing or no file matches, and NotADirectoryError when `log_dir` is a file.
    """
    if not log_dir.exists():
        raise FileNotFoundError(
            f"log directory not found: {log_dir}. Create it and put access logs in it, "
            "or point paths.log_dir in conf/paths/default.yaml to the directory that has them."
        )
    if not log_dir.is_dir():
        raise NotADirectoryError(f"log directory {log_dir} is a file; set paths.log_dir to its directory")

    paths = sorted({path for pattern in log_globs for path in log_dir.glob(pattern) if path.is_file()})
    if not paths:
        raise FileNotFoundError(
            f"no log files in {log_dir} match data.log_globs {list(log_globs)}. Add log files "
            "there, or change data.log_globs in conf/data/default.yaml to match their names."
        )
    return [_describe(path, jsonl_globs) for path in paths]


def is_gzip(path: Path) -> bool:
    """Return whether the file starts with the gzip magic bytes."""
    with path.open("rb") as handle:
        return handle.read(len(GZIP_MAGIC)) == GZIP_MAGIC


def iter_lines(log_file: LogFile, gzip_read_bytes: int) -> Iterator[bytes]:
    """Yield the lines of a log file as bytes without their line breaks.

    Gzip files are decompressed `gzip_read_bytes` at a time. Raises SourceReadError after
    the last readable line when the stream is damaged, and OSError when the file
    cannot be opened.
    """
    if log_file.compressed:
        yield from _split_lines(_gzip_chunks(log_file.path, gzip_read_bytes))
        return

    with log_file.path.open("rb") as handle:
        try:
            for line in handle:
                yield line.rstrip(b"\r\n")
        except OSError as err:
            raise SourceReadError("read_failed", f"reading {log_file.source} failed: {err}") from err


def describe_files(paths: Sequence[Path], jsonl_globs: Sequence[str]) -> list[LogFile]:
    """Describe explicitly named files; raises FileNotFoundError naming a missing one."""
    missing = [str(path) for path in paths if not Path(path).is_file()]
    if missing:
        raise FileNotFoundError(f"log files not found: {missing}. Check the paths and try again.")
    return [_describe(Path(path), jsonl_globs) for path in paths]


def _describe(path: Path, jsonl_globs: Sequence[str]) -> LogFile:
    is_jsonl = any(fnmatch.fnmatchcase(path.name, pattern) for pattern in jsonl_globs)
    return LogFile(
        path=path,
        source=f"{path.parent.name}/{path.name}",
        format=JSONL if is_jsonl else ACCESS_LOG,
        compressed=is_gzip(path),
    )


def _gzip_chunks(path: Path, read_bytes: int) -> Iterator[bytes]:
    """Yield decompressed chunks, and raise SourceReadError where the stream breaks.

    `read1` decompresses at most one block per call, so a later error loses no data
    that an earlier call already decompressed.
    """
    with gzip.open(path, "rb") as stream:
        try:
            while chunk := stream.read1(read_bytes):
                yield chunk
        except EOFError as err:
            raise SourceReadError("truncated_gzip", f"gzip stream of {path.name} ends early: {err}") from err
        except (gzip.BadGzipFile, zlib.error) as err:
            raise SourceReadError("corrupt_gzip", f"gzip stream of {path.name} is corrupt: {err}") from err
        except OSError as err:
            raise SourceReadError("read_failed", f"reading {path.name} failed: {err}") from err


def _split_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Split byte chunks into lines. A last line without a line break is yielded too."""
    pending: list[bytes] = []
    try:
        for chunk in chunks:
            lines = chunk.split(b"\n")
            if len(lines) > 1:
                pending.append(lines[0])
                lines[0] = b"".join(pending)
                pending = []
                for line in lines[:-1]:
                    yield line.rstrip(b"\r")
            pending.append(lines[-1])
    except SourceReadError as err:
        err.partial_line = b"".join(pending).rstrip(b"\r")
        raise

    last = b"".join(pending)
    if last:
        yield last.rstrip(b"\r")
