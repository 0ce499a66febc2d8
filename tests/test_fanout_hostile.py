"""A second reader's attempts at ``--jobs``: inputs and endings a user meets, where a run with
workers must still say byte for byte what a run in one process says."""

from helpers import send


def _both(*args, input=None):
    """(exit code, stdout, stderr) of ``send -n ARGS`` with --jobs 1 and with --jobs 2."""
    results = []
    for jobs in (1, 2):
        result = send("-n", "--jobs", jobs, *args, input=input)
        assert "internal error" not in result.stderr
        results.append((result.exit_code, result.stdout_bytes, result.stderr))
    return results


def test_a_folder_of_files_that_are_not_events_is_not_called_empty(tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "notes.txt").write_bytes(b"not events at all\n")
    alone, workers = _both("-o", "ndjson", folder)
    assert workers == alone
    assert "holds no files to read" not in alone[2]


def test_a_folder_of_one_dangling_link_is_called_empty_with_workers_too(tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "gone.ndjson").symlink_to(tmp_path / "missing")
    alone, workers = _both("-o", "ndjson", folder)
    assert workers == alone
    assert "holds no files to read" in alone[2]
