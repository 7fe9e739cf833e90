"""cvrun.io: atomic writes that fail as one clear StorageError, folder names the file system takes, run locks."""

import errno
import os
import socket

import pytest

from cvrun.io import (NAME_BYTES, FolderBusy, StorageError, atomic_write_bytes, lock_folder, lock_holder, short_name,
                      unlock_folder)
from tests.conftest import lock_held_elsewhere


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_failed_write_names_the_file_and_leaves_the_previous_version(tmp_path, monkeypatch, code):
    target = tmp_path / "summary.json"
    atomic_write_bytes(target, b"good")

    def refuse(fd):  # a full disk often shows when the data is flushed to it
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", refuse)
    with pytest.raises(StorageError) as caught:
        atomic_write_bytes(target, b"new")
    monkeypatch.undo()
    assert str(caught.value) == f"cannot write {target}: {os.strerror(code)} ({errno.errorcode[code]})"
    assert target.read_bytes() == b"good" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_other_os_errors_stay_what_they_are(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(FileExistsError):
        atomic_write_bytes(tmp_path / "file" / "below", b"x")


def test_long_sweep_job_names_are_cut_but_stay_distinct():
    name = "0_" + ",".join(f"key{i}.sub=value{i}" for i in range(40))
    other = name[:-1] + "X"
    assert short_name("0_aug=none") == "0_aug=none"
    cut, cut_other = short_name(name), short_name(other)
    assert len(cut.encode()) <= NAME_BYTES and cut.startswith("0_key0.sub=value0,") and cut != cut_other
    assert len(short_name("é" * 300).encode()) <= NAME_BYTES  # never splits a character


def test_a_folder_lock_names_its_holder_and_dies_with_it(tmp_path):
    with lock_held_elsewhere(tmp_path) as holder:
        expected = f"pid {holder.pid} on {socket.gethostname()}"
        assert lock_holder(tmp_path) == expected
        with pytest.raises(FolderBusy, match=expected):
            lock_folder(tmp_path)
    assert lock_holder(tmp_path) is None  # kill -9 leaves no stale lock
    lock_folder(tmp_path)
    lock_folder(tmp_path)  # the same process may take it again
    unlock_folder(tmp_path)
    assert lock_holder(tmp_path) is None
