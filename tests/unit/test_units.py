from pathlib import Path

from dropzone.scan.partition import ROOT, split_units, units_of
from dropzone.scan.scanner import Entry


def entry(path: str, is_dir: bool = False) -> Entry:
    return Entry(path, 0 if is_dir else 1, 0, 1, hash(path), is_dir)


def test_top_level_folders_are_units_and_top_level_files_share_one() -> None:
    listing = [
        entry("a.gguf"),
        entry("a.toml"),
        entry("team", is_dir=True),
        entry("team/m.gguf"),
        entry("team/sub", is_dir=True),
        entry("team/sub/config.json"),
        entry("ft", is_dir=True),
        entry("ft.toml"),  # a sidecar beside the folder ft/: in both units
    ]
    units = split_units(listing)
    assert {e.path for e in units[ROOT]} == {"a.gguf", "a.toml", "ft.toml"}
    assert {e.path for e in units["team"]} == {
        "team",
        "team/m.gguf",
        "team/sub",
        "team/sub/config.json",
    }
    assert {e.path for e in units["ft"]} == {"ft", "ft.toml"}


def test_hints_map_to_the_units_they_concern(tmp_path: Path) -> None:
    (tmp_path / "team").mkdir()
    assert units_of(tmp_path, tmp_path / "team" / "x" / "m.gguf") == {"team"}
    assert units_of(tmp_path, tmp_path / "team") == {"team"}
    assert units_of(tmp_path, tmp_path / "ft.toml") == {ROOT, "ft.toml", "ft"}
    assert units_of(tmp_path, tmp_path.parent / "elsewhere") == set()
