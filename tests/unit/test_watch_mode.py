"""How the drop folder is watched, from the configuration, the file-system type and the probe."""

from __future__ import annotations

import errno

import pytest

from dropzone.service.watch_mode import DEFAULT_POLL_SECONDS, decide, out_of_watches


def no_probe() -> bool:
    raise AssertionError("the probe must not decide here")


@pytest.mark.parametrize("fs_type", ["nfs", "nfs4", "cifs", "smb3", "fuse.sshfs", "fuseblk", "9p"])
def test_a_network_or_shared_folder_is_polled_though_a_probe_would_pass(fs_type: str) -> None:
    plan = decide("auto", 0, fs_type, no_probe)
    assert (plan.mode, plan.poll_interval, plan.fallback) == (
        "polling",
        DEFAULT_POLL_SECONDS,
        False,
    )
    assert plan.reason.startswith(f"{fs_type}: ")
    assert "raise no inotify events" in plan.reason or "remote changes" in plan.reason


def test_a_network_folder_polls_at_the_configured_interval() -> None:
    assert decide("auto", 7, "nfs4", no_probe).poll_interval == 7


@pytest.mark.parametrize("fs_type", ["ext4", "xfs", "btrfs", "tmpfs", "overlay", None])
def test_a_local_folder_is_judged_by_the_probe(fs_type: str | None) -> None:
    native = decide("auto", 0, fs_type, lambda: True)
    assert (native.mode, native.fallback) == ("native", False)
    assert "probe's event arrived" in native.reason
    silent = decide("auto", 0, fs_type, lambda: False)
    assert (silent.mode, silent.fallback) == ("polling", True)
    assert "did not arrive" in silent.reason


def test_configuration_decides_before_facts() -> None:
    assert decide("native", 0, "nfs4", no_probe).mode == "native"
    polling = decide("polling", 0, "ext4", no_probe)
    assert (polling.mode, polling.poll_interval) == ("polling", DEFAULT_POLL_SECONDS)
    legacy = decide("auto", 5, "ext4", no_probe)  # poll_interval > 0 alone meant polling
    assert (legacy.mode, legacy.poll_interval) == ("polling", 5)
    assert legacy.reason == "configured: poll_interval = 5"


def test_inotify_refused_means_polling_with_the_fix() -> None:
    plan = out_of_watches(OSError(errno.ENOSPC, "inotify watch limit reached"), 0)
    assert (plan.mode, plan.poll_interval, plan.fallback) == ("polling", DEFAULT_POLL_SECONDS, True)
    assert "inotify watch limit reached" in plan.reason
    assert "max_user_watches" in plan.reason
