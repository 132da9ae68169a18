"""files.atomic_write: a reader sees the old file or the whole new one, never half of one, and a failure leaves
nothing behind."""

import os
import stat

import pytest

from lightning_albert.files import atomic_write


def _folder_listing(path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def test_writes_the_file_and_replaces_an_old_one(tmp_path):
    target = tmp_path / "report.json"
    with atomic_write(target, encoding="utf-8") as f:
        f.write("first")
    with atomic_write(target, encoding="utf-8") as f:
        f.write("second, longer than the first")
    assert target.read_text(encoding="utf-8") == "second, longer than the first"
    assert _folder_listing(tmp_path) == ["report.json"]  # no temporary file left beside it


def test_binary_mode_and_open_arguments_reach_the_file(tmp_path):
    with atomic_write(tmp_path / "picture.png", "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n\x00\xff")
    assert (tmp_path / "picture.png").read_bytes() == b"\x89PNG\r\n\x1a\n\x00\xff"
    with atomic_write(tmp_path / "rows.csv", newline="", encoding="latin-1") as f:
        f.write("Café\r\n")
    assert (tmp_path / "rows.csv").read_bytes() == "Café\r\n".encode("latin-1")


def test_the_old_file_stays_whole_until_the_block_ends(tmp_path):
    """While the new content is being written it sits in a temporary file in the same folder (so the final rename
    stays on one file system, where it is atomic), and the target still reads as before."""
    target = tmp_path / "README.md"
    target.write_text("old card")
    with atomic_write(target) as f:
        f.write("new card, half written")
        f.flush()
        assert target.read_text() == "old card"
        (temporary,) = [p for p in tmp_path.iterdir() if p != target]
        assert temporary.read_text() == "new card, half written"
    assert target.read_text() == "new card, half written"
    assert not temporary.exists()


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()], ids=["OSError", "KeyboardInterrupt"])
def test_a_failure_while_writing_leaves_the_old_file_intact_and_no_temporary_file(tmp_path, error):
    target = tmp_path / "metrics.csv"
    target.write_bytes(b"epoch,loss\n0,1.5\n")
    with pytest.raises(type(error)):
        with atomic_write(target, "wb") as f:
            f.write(b"epoch,loss\n0,")
            raise error
    assert target.read_bytes() == b"epoch,loss\n0,1.5\n"
    assert _folder_listing(tmp_path) == ["metrics.csv"]


def test_a_failed_first_write_leaves_no_file_at_all(tmp_path):
    with pytest.raises(ValueError):
        with atomic_write(tmp_path / "predictions.csv") as f:
            f.write("row,label\n")
            raise ValueError("a row could not be formatted")
    assert _folder_listing(tmp_path) == []


def test_missing_parent_folders_are_made(tmp_path):
    target = tmp_path / "runs" / "lightning_logs" / "version_0" / "report.json"
    with atomic_write(target) as f:
        f.write("{}")
    assert target.read_text() == "{}"


def test_the_written_file_gets_the_permissions_open_would_give(tmp_path):
    umask = os.umask(0o022)
    try:
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
        with atomic_write(tmp_path / "atomic.txt") as f:
            f.write("x")
    finally:
        os.umask(umask)
    mode = stat.S_IMODE((tmp_path / "atomic.txt").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode), oct(mode)
