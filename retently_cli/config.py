"""The YAML config: loading, validation with key paths and line numbers, and the result.

Validation walks PyYAML's node tree rather than the constructed Python objects, so every
problem can name the line it sits on, unquoted campaign ids such as ``5e10`` stay strings, and
a key written twice is caught instead of silently overwritten.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from retently_cli.errors import ConfigError  # noqa: F401  (raised here, re-exported)
from retently_cli.vocabulary import EnvVar

PROPERTY_TYPES = ("string", "date", "integer", "boolean", "collection")
DEFAULT_EMAIL_PATHS = ("properties.email",)
DEFAULT_CONFIG_NAME = "retently.yaml"
CONFIG_ENV = EnvVar.CONFIG

DEFAULT_BASE_URL = "https://app.retently.com"
BASE_URL_ENV = EnvVar.BASE_URL

# Delivery settings: key -> (smallest, largest, whole numbers only); defaults in Delivery.
_DELIVERY_KEYS = {
    "batch_size": (1, 1000, True),
    "rate_limit": (1, 100_000, True),
    "concurrency": (1, 32, True),
    "timeout": (0.1, 600, False),
    "max_attempts": (1, 20, True),
}
_TOP_KEYS = (
    "api_key", "campaigns", "email_paths", "properties", "identities", "base_url", *_DELIVERY_KEYS
)  # fmt: skip
_CAMPAIGN_KEYS = ("events", "delay", "once_per_email")
_PROPERTIES_KEYS = ("exclude", "types")
_IDENTITIES_KEYS = ("from_identify",)
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"


@dataclass(frozen=True)
class Campaign:
    id: str
    events: tuple[str, ...]
    delay: int | None = None
    line: int = 0
    once_per_email: int | None = None  # days: at most one survey per email in this window


@dataclass(frozen=True)
class ApiKeySetting:
    """The ``api_key`` value as written, resolved only when a key is really needed."""

    template: str = field(repr=False)
    source: str  # "config.yaml:3", for messages
    key_path: str = "api_key"

    def resolve(self, environ: os._Environ | dict | None = None) -> str:
        env = os.environ if environ is None else environ
        problems = []
        for var in dict.fromkeys(m.group(1) for m in _ENV_REF.finditer(self.template)):
            if not env.get(var):
                state = "is empty" if var in env else "is not set"
                problems.append(
                    f"{self.source}: {self.key_path}: environment variable {var} {state}"
                )
        if problems:
            raise ConfigError(problems)
        value = _ENV_REF.sub(lambda m: env[m.group(1)], self.template).strip()
        if not value:
            raise ConfigError([f"{self.source}: {self.key_path}: is empty"])
        return value

    @property
    def variables(self) -> list[str]:
        """The environment variables the value names."""
        return [m.group(1) for m in _ENV_REF.finditer(self.template)]

    @property
    def is_literal(self) -> bool:
        return not _ENV_REF.search(self.template)


@dataclass(frozen=True)
class Delivery:
    """How requests are made: where to, how many subscribers each, how fast."""

    base_url: str = DEFAULT_BASE_URL
    batch_size: int = 100
    rate_limit: int = 150  # requests per minute, the account's limit
    concurrency: int = 4
    timeout: float = 30.0
    max_attempts: int = 6


# The one place delivery defaults are written: what a config without them gets, and what the
# retry policy, the client and the batcher take when they are made without a config.
DELIVERY_DEFAULTS = Delivery()


@dataclass(frozen=True)
class Config:
    campaigns: tuple[Campaign, ...]
    email_paths: tuple[str, ...] = DEFAULT_EMAIL_PATHS
    exclude: frozenset[str] = frozenset()
    types: dict[str, str] = field(default_factory=dict)
    api_key: ApiKeySetting | None = None
    path: Path | None = None
    delivery: Delivery = field(default_factory=Delivery)
    # Learn userId/anonymousId -> email (and names, company) from Identify calls first.
    from_identify: bool = False

    def campaigns_by_event(self) -> dict[str, list[Campaign]]:
        mapping: dict[str, list[Campaign]] = {}
        for campaign in self.campaigns:
            for name in campaign.events:
                mapping.setdefault(name, []).append(campaign)
        return mapping


def check_base_url(url: str) -> str:
    """The URL without a trailing slash; plain http is allowed only to this machine."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL")
    if parts.username or parts.password or parts.query:
        raise ValueError("must not carry credentials or a query string")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError(
            f"{url!r} uses plain http to another machine; use https "
            "(the API key would cross the network in clear text)"
        )
    return url.strip().rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def find_config(explicit: str | None, environ: dict | None = None) -> Path:
    """The config in use: ``--config``, else ``$RETENTLY_CONFIG``, else ``./retently.yaml``."""
    env = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    return Path(DEFAULT_CONFIG_NAME)


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: config file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read config: {exc}"]) from None
    return parse_config(text, str(path), path=path)


def parse_config(text: str, name: str = "<config>", path: Path | None = None) -> Config:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        if isinstance(exc, yaml.reader.ReaderError):
            line = text.count("\n", 0, exc.position) + 1
            where, problem = f"{name}:{line}", f"unacceptable character #x{exc.character:04x}"
        else:
            where = f"{name}:{mark.line + 1}" if mark else name
            parts = (getattr(exc, "context", None), getattr(exc, "problem", None))
            problem = ", ".join(p for p in parts if p) or str(exc)
        raise ConfigError([f"{where}: not valid YAML: {_redact_key(problem, text)}"]) from None
    except RecursionError:
        raise ConfigError([f"{name}: nested too deeply to be a retently config"]) from None
    try:
        return _Validator(name).config(root, path)
    except RecursionError:
        raise ConfigError([f"{name}: nested too deeply to be a retently config"]) from None


def _redact_key(message: str, text: str) -> str:
    """PyYAML quotes pieces of the text in its errors; never let that be the API key."""
    for match in re.finditer(r"^\s*api_key\s*:\s*(\S.*?)\s*$", text, re.MULTILINE):
        value = match.group(1).strip("'\"*&!")
        if len(value) >= 4 and value in message:
            message = message.replace(value, "<api_key>")
    return message


class _Validator:
    def __init__(self, name: str):
        self.name = name
        self.problems: list[tuple[int, str]] = []  # (line, message), sorted when raised

    def fail(self, node: yaml.Node, key_path: str, message: str) -> None:
        line = node.start_mark.line + 1
        self.problems.append((line, f"{self.name}:{line}: {key_path}: {message}"))

    def config(self, root: yaml.Node | None, path: Path | None) -> Config:
        if root is None or (isinstance(root, yaml.ScalarNode) and root.tag == _NULL):
            raise ConfigError([f"{self.name}: the config is empty; it needs at least 'campaigns'"])
        if not isinstance(root, yaml.MappingNode):
            raise ConfigError(
                [f"{self.name}:{root.start_mark.line + 1}: the config must be a mapping"]
            )
        top = self.mapping(root, "", _TOP_KEYS)

        api_key = None
        if "api_key" in top:
            node = top["api_key"][1]
            if self.string(node, "api_key") is not None:
                api_key = ApiKeySetting(node.value, f"{self.name}:{node.start_mark.line + 1}")

        campaigns: list[Campaign] = []
        if "campaigns" not in top:
            self.problems.append((1, f"{self.name}:1: campaigns: is required"))
        else:
            campaigns = self.campaigns(top["campaigns"][1])

        email_paths: tuple[str, ...] = DEFAULT_EMAIL_PATHS
        if "email_paths" in top:
            email_paths = self.string_list(top["email_paths"][1], "email_paths", non_empty=True)

        exclude: frozenset[str] = frozenset()
        types: dict[str, str] = {}
        if "properties" in top:
            exclude, types = self.properties(top["properties"][1])

        from_identify = False
        if "identities" in top:
            from_identify = self.identities(top["identities"][1])

        settings: dict[str, Any] = {}
        if "base_url" in top:
            node = top["base_url"][1]
            url = self.string(node, "base_url")
            if url is not None:
                try:
                    settings["base_url"] = check_base_url(url)
                except ValueError as exc:
                    self.fail(node, "base_url", str(exc))
        for key, (low, high, whole) in _DELIVERY_KEYS.items():
            if key in top:
                value = self.number(top[key][1], key, low, high, whole)
                if value is not None:
                    settings[key] = value

        if self.problems:
            raise ConfigError([text for _, text in sorted(self.problems, key=lambda p: p[0])])
        return Config(
            campaigns=tuple(campaigns),
            email_paths=tuple(email_paths),
            exclude=exclude,
            types=types,
            api_key=api_key,
            path=path,
            delivery=Delivery(**settings),
            from_identify=from_identify,
        )

    def mapping(
        self, node: yaml.MappingNode, key_path: str, allowed: tuple[str, ...] | None
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """Keys (trimmed) to (key node, value node); reports unknown and repeated keys."""
        seen: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if (
                not isinstance(key_node, yaml.ScalarNode)
                or key_node.tag == _NULL
                or not key_node.value.strip()
            ):
                self.fail(key_node, key_path or "(top level)", "keys must be non-empty strings")
                continue
            key = key_node.value.strip()
            where = f"{key_path}.{key}" if key_path else key
            if key in seen:
                first = seen[key][0].start_mark.line + 1
                self.fail(key_node, where, f"written twice (first on line {first})")
                continue
            if allowed is not None and key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
                self.fail(key_node, where, f"unknown key{suggestion} (known: {', '.join(allowed)})")
                continue
            seen[key] = (key_node, value_node)
        return seen

    def string(self, node: yaml.Node, key_path: str) -> str | None:
        if not isinstance(node, yaml.ScalarNode) or node.tag == _NULL:
            self.fail(node, key_path, f"must be a string, got {_describe(node)}")
            return None
        return node.value

    def string_list(self, node: yaml.Node, key_path: str, non_empty: bool) -> tuple[str, ...]:
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, key_path, f"must be a list of strings, got {_describe(node)}")
            return ()
        items = []
        for i, item in enumerate(node.value):
            value = self.string(item, f"{key_path}[{i}]")
            if value is not None and not value.strip():
                self.fail(item, f"{key_path}[{i}]", "must not be empty")
            elif value is not None:
                items.append(value)
        if non_empty and not node.value:
            self.fail(node, key_path, "must list at least one entry")
        return tuple(items)

    def campaigns(self, node: yaml.Node) -> list[Campaign]:
        if not isinstance(node, yaml.MappingNode):
            self.fail(
                node, "campaigns", f"must map campaign ids to event names, got {_describe(node)}"
            )
            return []
        if not node.value:
            self.fail(node, "campaigns", "must map at least one campaign id to event names")
            return []
        result = []
        for campaign_id, (key_node, value_node) in self.mapping(node, "campaigns", None).items():
            campaign = self.campaign(campaign_id, key_node, value_node)
            if campaign is not None:
                result.append(campaign)
        return result

    def campaign(self, cid: str, key_node: yaml.Node, node: yaml.Node) -> Campaign | None:
        where = f"campaigns.{cid}"
        delay = once = None
        if isinstance(node, yaml.MappingNode):
            keys = self.mapping(node, where, _CAMPAIGN_KEYS)
            if "events" not in keys:
                self.fail(node, where, "needs 'events': the Track event names for this campaign")
                return None
            events_node = keys["events"][1]
            where_events = f"{where}.events"
            if "delay" in keys:
                delay = self.delay(keys["delay"][1], f"{where}.delay")
            if "once_per_email" in keys:
                once = self.number(
                    keys["once_per_email"][1], f"{where}.once_per_email", 1, 3650, True
                )
        else:
            events_node, where_events = node, where
        names = self.event_names(events_node, where_events)
        if not names:
            return None
        return Campaign(cid, names, delay, key_node.start_mark.line + 1, once)

    def event_names(self, node: yaml.Node, where: str) -> tuple[str, ...]:
        """A comma-separated string (as in Segment's settings) or a list of exact names."""
        if isinstance(node, yaml.ScalarNode) and node.tag == _STR:
            parts = [part.strip() for part in node.value.split(",")]
            if not any(parts):
                self.fail(node, where, "lists no event names")
                return ()
            if not all(parts):
                self.fail(node, where, "has an empty event name (a stray comma?)")
                return ()
            names = [(part, node) for part in parts]
        elif isinstance(node, yaml.SequenceNode):
            if not node.value:
                self.fail(node, where, "lists no event names")
                return ()
            names = []
            for i, item in enumerate(node.value):
                value = self.string(item, f"{where}[{i}]")
                if value is not None and not value.strip():
                    self.fail(item, f"{where}[{i}]", "event name is empty")
                elif value is not None:
                    names.append((value, item))
        else:
            self.fail(
                node,
                where,
                f"must be event names: a comma-separated string or a list, got {_describe(node)}",
            )
            return ()
        seen = set()
        for name, name_node in names:
            if name in seen:
                self.fail(name_node, where, f"lists '{name}' twice")
                return ()
            seen.add(name)
        return tuple(name for name, _ in names)

    def number(self, node: yaml.Node, where: str, low, high, whole: bool):
        allowed = (_INT,) if whole else (_INT, _FLOAT)
        if isinstance(node, yaml.ScalarNode) and node.tag in allowed:
            try:
                value = int(node.value) if node.tag == _INT else float(node.value)
            except ValueError:
                value = None
            if value is not None and low <= value <= high:
                return value
        kind = "a whole number" if whole else "a number"
        self.fail(node, where, f"must be {kind} from {low} to {high}, got {_describe(node)}")
        return None

    def delay(self, node: yaml.Node, where: str) -> int | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == _INT and node.value.isdigit():
            return int(node.value)
        self.fail(node, where, f"must be a whole number of days (0 or more), got {_describe(node)}")
        return None

    def properties(self, node: yaml.Node) -> tuple[frozenset[str], dict[str, str]]:
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, "properties", f"must be a mapping, got {_describe(node)}")
            return frozenset(), {}
        keys = self.mapping(node, "properties", _PROPERTIES_KEYS)
        exclude: frozenset[str] = frozenset()
        types: dict[str, str] = {}
        if "exclude" in keys:
            exclude = frozenset(
                self.string_list(keys["exclude"][1], "properties.exclude", non_empty=False)
            )
        if "types" in keys:
            types_node = keys["types"][1]
            if not isinstance(types_node, yaml.MappingNode):
                self.fail(
                    types_node,
                    "properties.types",
                    f"must map property names to types, got {_describe(types_node)}",
                )
            else:
                for name, (_, value) in self.mapping(types_node, "properties.types", None).items():
                    where = f"properties.types.{name}"
                    kind = self.string(value, where)
                    if kind is not None and kind not in PROPERTY_TYPES:
                        self.fail(value, where, f"must be one of {', '.join(PROPERTY_TYPES)}")
                    elif kind is not None:
                        types[name] = kind
        return exclude, types

    def identities(self, node: yaml.Node) -> bool:
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, "identities", f"must be a mapping, got {_describe(node)}")
            return False
        keys = self.mapping(node, "identities", _IDENTITIES_KEYS)
        if "from_identify" not in keys:
            return False
        value = keys["from_identify"][1]
        if isinstance(value, yaml.ScalarNode) and value.tag == _BOOL:
            return value.value.lower() in ("true", "yes", "on")  # YAML 1.1, as PyYAML reads it
        self.fail(
            value, "identities.from_identify", f"must be true or false, got {_describe(value)}"
        )
        return False


def _describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == _NULL:
        return "nothing"
    return repr(node.value)
