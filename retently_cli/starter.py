"""The starter config ``retently init`` writes: valid as it is, commented, with candidates."""

from __future__ import annotations

import json
from datetime import date

from retently_cli.visible import visible

PLACEHOLDER = "TODO: Track event names"
PLACEHOLDER_ID = "YOUR-CAMPAIGN-ID"
CANDIDATES = 20


def starter_config(
    campaigns: list[dict] | None = None,
    candidates: list[tuple[str, int]] | None = None,
    log_name: str | None = None,
    today: date | None = None,
) -> str:
    """YAML text. ``campaigns``: the account's transactional campaigns, when a key was at hand;
    ``candidates``: (Track event name, count) from a log, most frequent first."""
    lines = [
        f"# retently-cli config, started by `retently init` on {(today or date.today()):%Y-%m-%d}.",
        "# Every key is described in config.example.yaml and the README;",
        "# `retently check` validates it, `retently coverage LOG` shows how it covers a log.",
        "",
        "# The Retently API key: ${VAR} is read from the environment when the key is needed.",
        "api_key: ${RETENTLY_API_KEY}",
        "",
        "# Retently transactional campaign id -> the Segment Track event names that trigger it,",
        "# written exactly as in analytics.track(...), comma-separated. Replace each TODO.",
        "campaigns:",
    ]
    if campaigns:
        for campaign in campaigns:
            lines.append(f"  # {_describe(campaign)}")
            lines.append(f"  {json.dumps(str(campaign.get('id')))}: {json.dumps(PLACEHOLDER)}")
    else:
        lines += [
            "  # `retently campaigns` lists your campaigns and their ids.",
            f"  {json.dumps(PLACEHOLDER_ID)}: {json.dumps(PLACEHOLDER)}",
        ]
    if candidates:
        lines += [
            "",
            f"# The most frequent Track events in {visible(log_name or 'the log')}, as candidates:",
        ]
        width = max(len(_quoted(name)) for name, _ in candidates)
        for name, count in candidates[:CANDIDATES]:
            quoted = _quoted(name)
            lines.append(f"#   {quoted:<{width}}  {count:>12,}")
    lines += [
        "",
        "# Where the customer's email is looked up, first non-empty one wins.",
        "email_paths: [properties.email]",
        "",
    ]
    return "\n".join(lines)


def transactional(campaigns: list[dict]) -> list[dict]:
    """The campaigns a Track event can survey in: transactional ones, active first."""
    kept = [c for c in campaigns if "transactional" in str(c.get("type", "")).lower()]
    return sorted(kept, key=lambda c: (c.get("isActive") is False, str(c.get("name", ""))))


def _describe(campaign: dict) -> str:
    details = [str(campaign[k]) for k in ("metric", "channel") if campaign.get(k)]
    if campaign.get("isActive") is False:
        details.append("inactive")
    name = str(campaign.get("name") or "unnamed")
    return visible(f"{name} ({', '.join(details)})" if details else name)


def _quoted(name: str) -> str:
    """The name in double quotes, control characters escaped: a comment is a single line,
    and ``init -`` prints it."""
    return visible(json.dumps(name, ensure_ascii=False))
