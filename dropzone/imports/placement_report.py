"""What ``dropzone doctor`` says about placing blobs in a same-host server's store (issue 17):
same file system or not, reflink supported, write access to the blobs folder, and the group
membership the server's store needs."""

from __future__ import annotations

import grp
import os
import stat
from pathlib import Path

from dropzone.imports.blobfiles import blobs_problem
from dropzone.imports.placement import Placer
from dropzone.imports.placement_choice import ACCESS_FIX


def local_import_report(
    url: str, models_dir: Path, mode: str, on_success: str, drop_dir: Path
) -> tuple[bool, str, str]:
    """(fine, detail, fix) for one host with ``models_dir``; not fine means its blobs will
    go by HTTP although local placement was asked for."""
    blobs = models_dir / "blobs"
    problem = blobs_problem(blobs)
    group = _group_note(blobs)
    if problem is not None:
        return False, f"{problem}; {group}; blobs go by HTTP", ACCESS_FIX
    try:
        drop_dev = os.stat(drop_dir).st_dev
    except OSError as exc:
        return False, f"the drop folder cannot be seen: {exc.strerror or exc}", ""
    methods, reason = Placer(models_dir, mode, on_success=on_success, host=url).preview(drop_dev)
    same = os.stat(blobs).st_dev == drop_dev
    where = "same file system as the drop folder" if same else "another file system"
    if not methods:
        fix = 'set local_import = "auto" (or "copy")'
        return False, f"{where}; {reason}; {group}; blobs go by HTTP", fix
    order = " then ".join(methods)
    return True, f"{mode}: {order} ({reason}); blobs folder writable; {group}", ""


def _group_note(blobs: Path) -> str:
    try:
        st = os.stat(blobs)
    except OSError:
        return "no group to check"
    try:
        name = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        name = str(st.st_gid)
    member = st.st_gid in os.getgroups() or st.st_gid == os.getegid()
    writable = bool(st.st_mode & stat.S_IWGRP)
    return (
        f"blobs group {name}: this user {'is' if member else 'is not'} a member,"
        f" folder {'is' if writable else 'is not'} group-writable"
    )
