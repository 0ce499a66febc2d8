"""Where the API key comes from. It is never taken from the command line, and never shown."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from retently_cli.config import Config, ConfigError
from retently_cli.vocabulary import EnvVar

KEY_ENV = EnvVar.API_KEY


def key_variables(*configs: Config) -> set[str]:
    """The environment variables a key may be read from: what a process that needs no key
    (a worker reading files, ``fanout``) is not given."""
    names = {str(KEY_ENV)}
    for config in configs:
        if config.api_key is not None:
            names.update(config.api_key.variables)
    return names


def resolve_api_key(
    config: Config, key_file: str | None, stdin, events_from_stdin: bool, environ=None
) -> tuple[str, str]:
    """(key, where it came from): ``--api-key-file`` when given, else the config's
    ``api_key`` (with ``${VAR}`` expanded), else ``$RETENTLY_API_KEY``."""
    env = os.environ if environ is None else environ
    if key_file is not None:
        origin = f"--api-key-file {key_file}"
        return _checked(_from_file(key_file, stdin, events_from_stdin), origin), origin
    if config.api_key is not None:
        origin = f"api_key in {config.api_key.source}"
        return _checked(config.api_key.resolve(env), origin), origin
    if env.get(KEY_ENV, "").strip():
        return _checked(env[KEY_ENV].strip(), f"${KEY_ENV}"), f"${KEY_ENV}"
    raise ConfigError(
        [
            f"no API key: set api_key in the config, or ${KEY_ENV}, or pass "
            "--api-key-file PATH (a dry-run, -n, needs none)"
        ]
    )


def _checked(key: str, origin: str) -> str:
    """The key, if an HTTP header can carry it: visible ASCII, no spaces inside."""
    if not all("!" <= char <= "~" for char in key):
        raise ConfigError(
            [f"the API key from {origin} has characters an API key cannot have "
             "(spaces, control or non-ASCII characters): check it was copied whole"]
        )  # fmt: skip
    return key


def _from_file(path: str, stdin, events_from_stdin: bool) -> str:
    if path == "-":
        if events_from_stdin:
            raise ConfigError(["--api-key-file -: stdin already carries the events"])
        key = stdin.readline().decode("utf-8", "replace").strip()
    else:
        try:
            key = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                [f"--api-key-file {path}: cannot read it ({exc.__class__.__name__})"]
            ) from None
    if not key:
        raise ConfigError([f"--api-key-file {path}: is empty"])
    return key


def literal_key_warning(config: Config) -> str | None:
    """A warning when the config file holds a literal key that other users can read."""
    if config.api_key is None or not config.api_key.is_literal or config.path is None:
        return None
    try:
        mode = config.path.stat().st_mode
    except OSError:
        return None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        return (
            f"warning: {config.path} holds a literal API key and other users can read it; "
            f"use api_key: ${{{KEY_ENV}}} or chmod 600 {config.path}"
        )
    return None
