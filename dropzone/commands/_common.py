"""What every subcommand does first: load the settings, or explain why not (exit 2)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from dropzone.config.loading import CONFIG_ENV, DEFAULT_CONFIG_PATH, ENV_PREFIX, load_settings
from dropzone.config.settings import KEYS, Settings
from dropzone.errors import ConfigError

EXIT_CONFIG = 2


def load(
    args: argparse.Namespace,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    err: TextIO | None = None,
) -> Settings | int:
    """Settings from ``args.config`` and the environment (``os.environ`` unless given).

    On bad configuration, print one ``dropzone: <problem>`` line per problem to ``err``
    (stderr) and return ``EXIT_CONFIG``; callers return that int as their exit status.
    """
    config = getattr(args, "config", None)
    try:
        return load_settings(
            config_path=Path(config) if config else None,
            env=os.environ if env is None else env,
            overrides=overrides,
        )
    except ConfigError as e:
        report_config_error(e, err)
        return EXIT_CONFIG


def flag_overrides(args: argparse.Namespace) -> dict[str, object]:
    """Settings given as flags (``--drop-dir``, ``--state-dir``): the strongest source."""
    found = {key: getattr(args, key, None) for key in ("drop_dir", "state_dir")}
    return {key: value for key, value in found.items() if value is not None}


def report_config_error(error: ConfigError, err: TextIO | None = None) -> None:
    """One ``dropzone: <problem>`` line per problem on ``err`` (stderr by default)."""
    stream = sys.stderr if err is None else err
    for problem in error.problems:
        print(f"dropzone: {' '.join(problem.split())}", file=stream)


def describe_sources(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> str:
    """Which configuration ``load`` read, for people: the file (or that there was none) and the
    names of the ``DROPZONE_*`` variables that set a key; never their values."""
    env = os.environ if env is None else env
    config = getattr(args, "config", None)
    if config:
        where = f"{config} (--config)"
    elif env.get(CONFIG_ENV):
        where = f"{env[CONFIG_ENV]} ({CONFIG_ENV})"
    elif DEFAULT_CONFIG_PATH.is_file():
        where = str(DEFAULT_CONFIG_PATH)
    else:
        where = f"defaults (no --config, no {CONFIG_ENV}, no {DEFAULT_CONFIG_PATH})"
    names = sorted(
        name
        for name, value in env.items()
        if name.startswith(ENV_PREFIX)
        and name.removeprefix(ENV_PREFIX).lower() in KEYS
        and value.strip()
    )
    return f"configuration: {where}" + (f", and {', '.join(names)}" if names else "")
