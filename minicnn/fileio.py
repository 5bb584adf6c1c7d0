"""Writing files so that a crash never leaves a half-written file under the real name."""

from __future__ import annotations

import os
import tempfile


def atomic_write(path, write) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, fsync it, then rename it into place
    (``os.replace`` is atomic on POSIX and Windows)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix="-" + os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from other users
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
