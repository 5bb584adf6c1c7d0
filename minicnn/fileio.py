"""Writing files so that a crash never leaves a half-written file under the real name, nor a
temporary file behind for good.

A file is written as ``.tmp-<pid>-<random>-<name>`` beside its target, then renamed into place.
A process killed mid-write (SIGKILL, power loss) leaves that temporary file; the next save of
the same target removes it. Which ones are stale is told by the pid in the name: a temp file
whose process no longer runs here can have no writer. The pid is read rather than the file's
age because a slow save (19 MB onto a network disk) may take any time, and because a second
save right after a crash must clean up at once. Files of the form older minicnn versions wrote
(``.tmp-<random>-<name>``, no pid) are removed once an hour old. Nothing else is touched: only
names of exactly these forms, for this one target.
"""

from __future__ import annotations

import os
import re
import tempfile
import time

TEMP_PREFIX = ".tmp-"
LEGACY_AGE = 3600  # seconds: a pid-less temp file this old has no writer left


def atomic_write(path, write) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, fsync it, then rename it into place
    (``os.replace`` is atomic on POSIX and Windows). Stale temp files of ``path`` that killed
    writers left are removed first. An OSError names ``path``, not the temporary file."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    try:
        os.makedirs(directory, exist_ok=True)
        remove_stale_temps(path)
        fd, tmp = tempfile.mkstemp(
            dir=directory, prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix="-" + name
        )
    except OSError as e:
        raise _naming(e, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from other users
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename in (None, tmp):
            raise _naming(e, path) from None
        raise


def _naming(e: OSError, path: str) -> OSError:
    """The same error (same subclass, errno and message) about ``path``."""
    if e.errno is None:
        return e
    return OSError(e.errno, e.strerror, path)


def temp_pattern(name: str) -> re.Pattern:
    """The names atomic_write gives temporary files of a target called ``name``: group 1 is the
    writer's pid (absent in the older, pid-less form). mkstemp's random part is 8 characters."""
    return re.compile(rf"{re.escape(TEMP_PREFIX)}(?:(\d+)-)?[a-z0-9_]{{8}}-{re.escape(name)}")


def remove_stale_temps(path) -> list[str]:
    """Remove the temporary files that writers of ``path`` were killed before renaming; returns
    their paths. A file whose pid runs (this process's included) is left alone; so is one that
    vanishes or cannot be removed meanwhile (another cleaner, a read-only folder)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    pattern = temp_pattern(os.path.basename(path))
    removed = []
    try:
        entries = os.listdir(directory)
    except OSError:
        return removed
    for entry in entries:
        m = pattern.fullmatch(entry)
        if m is None:
            continue
        full = os.path.join(directory, entry)
        try:
            stale = (
                not _running(int(m.group(1)))
                if m.group(1)
                else time.time() - os.stat(full).st_mtime > LEGACY_AGE
            )
            if stale:
                os.unlink(full)
                removed.append(full)
        except OSError:
            continue
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if pid <= 0:  # 0 would signal our own process group; no writer has such a pid
        return False
    try:
        os.kill(pid, 0)  # signal 0: checks that the process exists, sends nothing
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # another user's process: it runs
        return True
    try:  # a zombie (killed, not yet reaped by its parent) writes nothing either
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[:1] != [b"Z"]
    except FileNotFoundError:  # it has just gone, unless there is no /proc at all (macOS)
        return not os.path.isdir("/proc/self")
    except OSError:
        return True
