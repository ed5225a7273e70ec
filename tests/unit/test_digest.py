"""The background file digest: equal to hashlib, honest about short files and cancels."""

from __future__ import annotations

import errno
import hashlib
import os
import sys
import threading
from pathlib import Path

import pytest

from atlas_ci.digest import HASH_READ, SWITCH_INTERVAL, FileDigest
from atlas_ci.errors import InputFileError
from tests.artifacts import in_a_child


@pytest.mark.parametrize("size", [0, 1, HASH_READ - 1, HASH_READ, 3 * HASH_READ + 17])
def test_digest_equals_hashlib(tmp_path: Path, size: int) -> None:
    path = tmp_path / "f"
    path.write_bytes(os.urandom(size))
    assert FileDigest.start(path, size).result() == hashlib.sha256(path.read_bytes()).hexdigest()


def test_result_can_be_asked_again(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    digest = FileDigest.start(path, 3)
    assert digest.result() == digest.result() == hashlib.sha256(b"abc").hexdigest()
    assert digest.seconds is not None and digest.seconds >= 0  # how long it took, once done


def test_a_file_of_another_size_is_refused_at_start(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    with pytest.raises(InputFileError, match="3 bytes, not the 4"):
        FileDigest.start(path, 4)
    with pytest.raises(InputFileError, match="cannot open"):
        FileDigest.start(tmp_path / "missing", 1)


def test_a_file_shorter_than_promised_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    with path.open("rb") as f:
        digest = FileDigest(f.fileno(), 10, str(path))
        with pytest.raises(InputFileError, match="shorter"):
            digest.result()


def test_a_cancelled_digest_gives_no_result(tmp_path: Path) -> None:
    path = tmp_path / "f"
    size = 16 << 30  # 16 GiB, sparse: seconds of hashing, so cancel() lands first
    with path.open("wb") as f:
        f.truncate(size)
    digest = FileDigest.start(path, size)
    digest.cancel()
    with pytest.raises(RuntimeError, match="cancelled"):
        digest.result()
    assert digest.seconds is None


def _sparse(tmp_path: Path, name: str, size: int) -> Path:
    path = tmp_path / name
    with path.open("wb") as f:
        f.truncate(size)
    return path


def _long_digest(tmp_path: Path, name: str) -> FileDigest:
    """A digest of 16 GiB of holes: it runs for seconds, until cancelled."""
    return FileDigest.start(_sparse(tmp_path, name, 16 << 30), 16 << 30)


def test_the_switch_interval_is_short_while_any_digest_runs_then_restored(
    tmp_path: Path,
) -> None:
    # The hash thread must get the GIL back quickly after each read and update, even
    # while the main thread imports or parses; the process's own setting comes back after.
    before = sys.getswitchinterval()
    assert before > SWITCH_INTERVAL  # Python's default, 5 ms
    first = _long_digest(tmp_path, "a")
    second = _long_digest(tmp_path, "b")
    try:
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL)
        first.cancel()
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL)  # one still runs
    finally:
        second.cancel()
    assert sys.getswitchinterval() == before


def test_a_shorter_switch_interval_set_by_the_caller_is_left_alone(tmp_path: Path) -> None:
    before = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL / 2)
    try:
        digest = FileDigest.start(_sparse(tmp_path, "a", 1 << 20), 1 << 20)
        digest.result()
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL / 2)
    finally:
        sys.setswitchinterval(before)


def test_a_start_interrupted_after_the_thread_ran_leaves_the_interval_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SIGINT can land in Thread.start() after the new thread has run: the thread and the
    # constructor both leave, and the interval must still come back exactly once.
    before = sys.getswitchinterval()
    real_start = threading.Thread.start

    def start_then_interrupt(thread: threading.Thread) -> None:
        real_start(thread)
        thread.join()
        raise KeyboardInterrupt

    keeper = _long_digest(tmp_path, "a")
    try:
        monkeypatch.setattr(threading.Thread, "start", start_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            FileDigest.start(_sparse(tmp_path, "b", 1 << 20), 1 << 20)
        monkeypatch.undo()
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL)  # keeper still runs
    finally:
        keeper.cancel()
    assert sys.getswitchinterval() == before


def test_the_interval_comes_back_even_if_closing_the_file_fails(tmp_path: Path) -> None:
    # A caller that closes the descriptor it handed over (owns_fd=True) makes the thread's
    # reads and its own close fail; the interval must come back all the same.
    before = sys.getswitchinterval()
    path = _sparse(tmp_path, "a", 16 << 30)  # seconds of hashing: the close lands mid-way
    fd = os.open(path, os.O_RDONLY)
    failures: list[type[BaseException]] = []
    hook = threading.excepthook
    threading.excepthook = lambda args: failures.append(args.exc_type)
    try:
        digest = FileDigest(fd, 16 << 30, str(path), owns_fd=True)
        os.close(fd)
        with pytest.raises(OSError, match=os.strerror(errno.EBADF)):
            digest.result()
    finally:
        threading.excepthook = hook
    assert failures == [OSError]  # the thread's own close, reported by threading
    assert sys.getswitchinterval() == before


def test_a_switch_interval_changed_while_a_digest_runs_is_kept(tmp_path: Path) -> None:
    before = sys.getswitchinterval()
    digest = _long_digest(tmp_path, "a")
    try:
        sys.setswitchinterval(0.002)  # the program's own choice, made meanwhile
    finally:
        digest.cancel()
    try:
        assert sys.getswitchinterval() == pytest.approx(0.002)
    finally:
        sys.setswitchinterval(before)


def test_start_on_a_file_swapped_for_a_fifo_fails_at_once(tmp_path: Path) -> None:
    # The size was measured on a regular file; a FIFO put in its place must not block the
    # open (a plain os.open waits for a writer for ever). In a child, so a hang cannot stall
    # the suite.
    os.mkfifo(tmp_path / "web.box")
    code = (
        "from atlas_ci.digest import FileDigest\n"
        "from atlas_ci.errors import InputFileError\n"
        "try:\n"
        "    FileDigest.start('web.box', 10)\n"
        "except InputFileError as exc:\n"
        "    print(exc.one_line())\n"
    )
    proc = in_a_child(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        "file 'web.box' is a FIFO (named pipe); artifact files must be regular files"
    )
