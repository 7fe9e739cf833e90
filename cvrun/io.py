"""Files that must never be half-written (checkpoints too), folders claimed once, and locks on run folders.

Every layer that writes (data's disk cache, engine's run folder, report's tables
and plots) goes through this module, so a kill at any moment leaves the previous
good version of a file, and a full or read-only disk is one clear error naming
the file, not a traceback.
"""

from __future__ import annotations

import errno
import hashlib
import io
import itertools
import os
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from cvrun.errors import UserError

# Faults of the storage rather than of cvrun: a full disk, a quota, a read-only or forbidden folder.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENAMETOOLONG}


class StorageError(Exception):
    """A file could not be written because of the disk or its permissions: one line, exit status 1."""

    exit_code = 1

    def __init__(self, path: Path, cause: OSError, advice: str = ""):
        self.path, self.cause = Path(path), cause
        name = errno.errorcode.get(cause.errno, str(cause.errno))
        super().__init__(f"cannot write {path}: {cause.strerror or cause} ({name})" + (f"; {advice}" if advice else ""))

    def with_advice(self, advice: str) -> "StorageError":
        return StorageError(self.path, self.cause, advice)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def storage_fault(path: Path, err: OSError) -> Exception:
    """The exception to raise for `err` while writing `path`: StorageError for disk faults, else `err` itself."""
    return StorageError(path, err) if err.errno in STORAGE_ERRNOS else err


def file_sha256(path: Path | str) -> str:
    """The file's SHA-256 as hex, read in 1 MiB blocks (a checkpoint need not fit in memory twice)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def replaced_atomically(path: Path) -> Iterator[str]:
    """A temporary file beside `path` (mode as a new file's) for the block to fill and fsync; it is renamed into
    place when the block ends, so `path` is never half-written, and removed if the block fails (an OSError
    becomes a StorageError naming `path`)."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual mode
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise storage_fault(path, err) from None
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename it into place (never half-written)."""
    with replaced_atomically(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """torch.save, written atomically."""
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A cvrun checkpoint, read with weights_only=True; a missing, truncated or foreign file is a UserError."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        # The first sentence of torch's message says what is wrong; the rest is advice about torch.load.
        reason = str(err).splitlines()[0].split(". ")[0].rstrip(".") if str(err) else type(err).__name__
        raise UserError(f"checkpoint {path} cannot be read ({reason}); it is truncated or not a "
                        "cvrun checkpoint") from None
    if not isinstance(state, dict) or "model" not in state:
        raise UserError(f"checkpoint {path} is not a cvrun checkpoint (no model weights in it)")
    return state


# Folders claimed in this launch: Hydra reads its run and sweep dir more than once. A sweep job's folder is
# claimed per job: the jobs of one sweep may name one folder.
_claimed: dict[str | tuple[str, int], Path] = {}
# Folders this launch created, parents first: a launch refused before it wrote anything leaves none behind.
_created: list[Path] = []


def make_folder(path: Path) -> None:
    """mkdir -p that remembers which folders it created (for remove_unused_folders); disk faults as StorageError."""
    path = Path(path)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise storage_fault(path, err) from None
    _created.extend(reversed(missing))


def claim_folder(path: str, key: str | tuple[str, int] | None = None) -> Path:
    """A new folder for one run: `path`, or `path_2`, `path_3`, ... when another run already has it.

    Hydra's timestamped names collide for runs launched in the same second. os.mkdir
    either creates a folder or fails, so two processes never claim the same one.
    `key` (default: the path) names the claim: asking again with it gives the same folder.
    """
    key = path if key is None else key
    if key not in _claimed:
        base = Path(path)
        make_folder(base.parent)
        try:
            for number in itertools.count(1):
                candidate = base if number == 1 else base.with_name(f"{base.name}_{number}")
                try:
                    candidate.mkdir()
                    break
                except FileExistsError:
                    continue
        except OSError as err:
            raise storage_fault(base, err) from None
        _created.append(candidate)
        _claimed[key] = candidate
    return _claimed[key]


def remove_unused_folders() -> None:
    """Remove the folders this launch created that hold nothing (but a lock file no process holds)."""
    for folder in reversed(_created):
        lock = folder / LOCK_FILE
        try:
            if [p.name for p in folder.iterdir()] == [LOCK_FILE] and lock_holder(folder) is None:
                unlock_folder(folder)
                lock.unlink()
            folder.rmdir()
        except OSError:
            continue  # it holds something, or is gone
    _created.clear()


# File systems allow 255 bytes in a name; sweep job folders keep a margin below it.
NAME_BYTES = 200


def short_name(name: str) -> str:
    """`name` as a folder name the file system accepts: cut to NAME_BYTES, with a hash of the whole name
    after the cut so that two long names stay two folders."""
    raw = name.encode()
    if len(raw) <= NAME_BYTES:
        return name
    digest = hashlib.sha1(raw).hexdigest()[:8]
    return raw[:NAME_BYTES - 10].decode(errors="ignore") + f"~{digest}"


def forget_claims() -> None:
    """A new launch (one run or one sweep) claims new folders."""
    _claimed.clear()
    _created.clear()


LOCK_FILE = ".lock"


class FolderBusy(Exception):
    """Another live process holds the lock on a run folder."""


# Folders this process has locked: folder -> descriptor. POSIX record locks belong to the process
# (a forked DataLoader worker does not inherit them, so it cannot keep a dead run locked) and end
# when it dies (kill -9 leaves no stale lock). They also end when the process closes any descriptor
# of the file, so it is opened once.
_locks: dict[Path, int] = {}


def lock_folder(folder: Path) -> None:
    """Hold an OS lock on `folder` for this process (again: nothing more); FolderBusy names the process that holds it."""
    import fcntl

    folder = Path(folder).resolve()
    if folder in _locks:
        return
    path = folder / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
    except OSError as err:
        raise storage_fault(path, err) from None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise FolderBusy(holder) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    _locks[folder] = fd


def unlock_folder(folder: Path) -> None:
    fd = _locks.pop(Path(folder).resolve(), None)
    if fd is not None:
        os.close(fd)


# Folders locked until the command's launch ends (a sweep's folder, for the sweep's whole life).
_launch_locks: list[Path] = []


def lock_for_launch(folder: Path) -> None:
    """lock_folder, held until end_launch."""
    lock_folder(folder)
    _launch_locks.append(Path(folder))


def end_launch() -> None:
    """Release the launch's locks; remove the folders it created and left empty (a launch refused at start)."""
    while _launch_locks:
        unlock_folder(_launch_locks.pop())
    remove_unused_folders()


def lock_holder(folder: Path) -> str | None:
    """Who holds `folder`'s lock ("pid 123 on host"), or None when no other live process does."""
    import fcntl

    folder = Path(folder).resolve()
    path = folder / LOCK_FILE
    if folder in _locks or not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except OSError:
        return os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
    finally:
        os.close(fd)  # ends the shared lock this test may have taken
