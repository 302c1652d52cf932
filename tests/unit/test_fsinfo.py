"""fsinfo: the mountinfo parser, the mount lookup, the polling advice, limits and the survey."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dropzone.commands.doctor import Status, fs_type_finding
from dropzone.fs import info as fsinfo
from dropzone.fs.info import Mount, mount_of, parse_mountinfo, polling_reason

SAMPLE = "\n".join(
    [
        "27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard",
        "22 27 0:21 / /proc rw,relatime - proc proc rw",
        # no optional fields at all
        "40 27 0:50 / /srv rw - xfs /dev/sdb1 rw",
        # several optional fields before the separator
        "41 40 0:51 / /srv/drop rw,relatime shared:7 master:3 - nfs4 nas:/export/drop rw,vers=4.2",
        # escaped spaces in the mount point and the source
        r"42 27 0:52 / /mnt/My\040Models rw - cifs //nas/My\040Share rw",
        r"43 27 0:53 / /mnt/back\134slash rw - fuse.sshfs me@box:/x rw",
        "this line is garbage",
        "44 27 0:54 / /short rw -",
    ]
)


def test_mountinfo_lines_give_mount_point_type_and_source() -> None:
    mounts = parse_mountinfo(SAMPLE)
    assert mounts[0] == Mount("/", "ext4", "/dev/vda")
    assert Mount("/srv", "xfs", "/dev/sdb1") in mounts
    assert Mount("/srv/drop", "nfs4", "nas:/export/drop") in mounts


def test_mountinfo_octal_escapes_are_decoded() -> None:
    mounts = parse_mountinfo(SAMPLE)
    assert Mount("/mnt/My Models", "cifs", "//nas/My Share") in mounts
    assert Mount("/mnt/back\\slash", "fuse.sshfs", "me@box:/x") in mounts


def test_mountinfo_lines_without_separator_or_type_are_skipped() -> None:
    assert len(parse_mountinfo(SAMPLE)) == 6


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/srv/drop/sub/x.gguf", "/srv/drop"),
        ("/srv/drop", "/srv/drop"),
        ("/srv/dropper", "/srv"),  # a prefix of the name is not a parent folder
        ("/srv", "/srv"),
        ("/home/me", "/"),
        ("/mnt/My Models/a", "/mnt/My Models"),
    ],
)
def test_the_longest_mount_point_holding_a_path_wins(path: str, expected: str) -> None:
    found = mount_of(path, parse_mountinfo(SAMPLE))
    assert found is not None
    assert found.mount_point == expected


def test_of_two_mounts_on_one_point_the_later_is_on_top() -> None:
    mounts = [Mount("/", "ext4", "a"), Mount("/srv", "ext4", "b"), Mount("/srv", "overlay", "c")]
    assert mount_of("/srv/x", mounts) == Mount("/srv", "overlay", "c")


def test_the_real_mountinfo_knows_the_root_file_system(tmp_path: Path) -> None:
    mount = fsinfo.file_system_of(tmp_path / "not" / "yet")
    assert mount is not None
    assert mount.fs_type
    assert str(tmp_path.resolve()).startswith(mount.mount_point.rstrip("/") + "/")


def test_an_unreadable_mountinfo_gives_no_mount(tmp_path: Path) -> None:
    assert fsinfo.file_system_of(tmp_path, tmp_path / "no-such-mountinfo") is None


REMOTE = ["nfs", "nfs4", "cifs", "smb3", "fuse", "fuseblk", "fuse.sshfs", "9p", "virtiofs"]


@pytest.mark.parametrize("fs_type", REMOTE)
def test_network_fuse_and_shared_folders_are_polled_under_watch_mode_auto(fs_type: str) -> None:
    assert polling_reason(fs_type)
    finding = fs_type_finding(Mount("/srv/drop", fs_type, "x"), poll_interval=0)
    assert finding.status is Status.OK
    assert "polled (watch_mode = auto)" in finding.detail


@pytest.mark.parametrize("fs_type", REMOTE)
def test_network_fuse_and_shared_folders_watched_natively_by_choice_are_a_warning(
    fs_type: str,
) -> None:
    finding = fs_type_finding(Mount("/srv/drop", fs_type, "x"), 0, watch_mode="native")
    assert finding.status is Status.WARNING
    assert finding.fix == 'set watch_mode = "auto" (polls here) or "polling"'


def test_an_overlay_folder_advises_polling() -> None:
    # Writes through the overlay raise events (the daemon probes it); only changes below it
    # do not: the advice stays a warning with a fix, not a decision.
    finding = fs_type_finding(Mount("/srv/drop", "overlay", "x"), poll_interval=0)
    assert finding.status is Status.WARNING
    assert finding.fix == "set poll_interval = 2"


@pytest.mark.parametrize("fs_type", ["ext4", "xfs", "btrfs", "zfs", "tmpfs", "f2fs"])
def test_local_file_systems_need_no_polling(fs_type: str) -> None:
    assert polling_reason(fs_type) is None
    assert fs_type_finding(Mount("/", fs_type, "x"), poll_interval=0).status is Status.OK


def test_a_network_file_system_already_polled_is_fine() -> None:
    finding = fs_type_finding(Mount("/srv", "nfs4", "nas:/x"), poll_interval=5)
    assert finding.status is Status.OK
    assert "polling as configured" in finding.detail


def test_an_unknown_file_system_is_a_warning() -> None:
    assert fs_type_finding(None, poll_interval=0).status is Status.WARNING


def test_inotify_limits_are_read_from_their_files(tmp_path: Path) -> None:
    (tmp_path / "max_user_watches").write_text("8192\n")
    (tmp_path / "max_user_instances").write_text("128\n")
    limits = fsinfo.read_inotify_limits(tmp_path)
    assert (limits.max_user_watches, limits.max_user_instances, limits.error) == (8192, 128, None)


def test_unreadable_inotify_limits_are_unknown_with_the_reason(tmp_path: Path) -> None:
    # Under the unit's ProcSubset=pid, /proc/sys is hidden: the files do not exist.
    (tmp_path / "max_user_instances").write_text("128\n")
    limits = fsinfo.read_inotify_limits(tmp_path)
    assert limits.max_user_watches is None
    assert limits.max_user_instances == 128
    assert limits.error is not None
    assert "max_user_watches" in limits.error


def test_free_bytes_matches_statvfs(tmp_path: Path) -> None:
    st = os.statvfs(tmp_path)
    assert fsinfo.free_bytes(tmp_path) == pytest.approx(st.f_bavail * st.f_frsize, rel=0.01)


def test_survey_counts_every_folder_but_lists_only_visible_files(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".imported" / "old").mkdir(parents=True)
    (tmp_path / "a" / "b" / "m.gguf").write_bytes(b"x" * 10)
    (tmp_path / "top.gguf").write_bytes(b"x" * 3)
    (tmp_path / ".hidden.gguf").write_bytes(b"x")
    (tmp_path / ".imported" / "old" / "done.gguf").write_bytes(b"x" * 99)
    (tmp_path / "link").symlink_to(tmp_path / "a")  # watchdog does not follow it: no watch
    found = fsinfo.survey(tmp_path)
    assert found.folders == 4  # a, a/b, .imported, .imported/old
    assert sorted((f.rel_path, f.size) for f in found.files) == [
        ("a/b/m.gguf", 10),
        ("top.gguf", 3),
    ]
    assert found.dev == tmp_path.stat().st_dev
    assert all(f.dev == found.dev for f in found.files)


def test_existing_ancestor_climbs_to_what_exists(tmp_path: Path) -> None:
    assert fsinfo.existing_ancestor(tmp_path / "x" / "y") == tmp_path
    assert fsinfo.existing_ancestor(tmp_path) == tmp_path
