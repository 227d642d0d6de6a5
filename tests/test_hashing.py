import pytest

from diffcomp.hashing import code_hash


def test_hash_follows_file_contents_only(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 2\n")
    h1 = code_hash("a.py", root=tmp_path)
    assert code_hash("a.py", root=tmp_path) == h1
    (tmp_path / "b.py").write_text("y = 3\n")
    assert code_hash("a.py", root=tmp_path) == h1  # unrelated file
    (tmp_path / "a.py").write_text("x = 2\n")
    assert code_hash("a.py", root=tmp_path) != h1
    assert code_hash("*.py", root=tmp_path) != code_hash("a.py", root=tmp_path)


def test_pattern_matching_nothing_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="matches no file"):
        code_hash("methods/nope.py", root=tmp_path)


def test_package_hash_covers_the_method_modules():
    from diffcomp.methods import METHODS

    for entry in METHODS.values():
        assert len(code_hash(entry.source)) == 16
