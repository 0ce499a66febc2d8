"""What the Retently account says about the config: is the key good, do the campaigns exist."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from retently_cli.client import Answer
from retently_cli.config import Config
from retently_cli.delivery import RetryPolicy, call_with_retries


@dataclass
class CampaignCheck:
    campaign: str
    problems: list[str]  # the campaign cannot be used
    warnings: list[str]  # it can, but probably should not be


def account_answer(call: Callable[[], Answer]) -> Answer:
    """One call about the account (the ping, the campaign list) for check, campaigns and init:
    retried three times, as much as a person waiting at the terminal should wait for."""
    return call_with_retries(call, RetryPolicy(max_attempts=3))


def campaigns_from(answer: Answer) -> list[dict] | None:
    """The campaign list of a ``GET /api/v2/campaigns`` answer, wherever the body keeps it."""
    body = answer.body
    if not isinstance(body, dict):
        return None
    for holder in (body, body.get("data")):
        if isinstance(holder, dict) and isinstance(holder.get("campaigns"), list):
            return [c for c in holder["campaigns"] if isinstance(c, dict)]
    if isinstance(body.get("data"), list):
        return [c for c in body["data"] if isinstance(c, dict)]
    return None


def check_campaigns(config: Config, campaigns: list[dict]) -> list[CampaignCheck]:
    by_id = {str(c.get("id") or c.get("_id")): c for c in campaigns}
    checks = []
    for mapped in config.campaigns:
        found = by_id.get(mapped.id)
        if found is None:
            checks.append(CampaignCheck(mapped.id, ["no such campaign in this account"], []))
            continue
        warnings = []
        if found.get("isActive") is False:
            warnings.append("is not active: Retently will not send its surveys")
        kind = str(found.get("type", "")).lower()
        if kind and "transactional" not in kind:
            warnings.append(f"is {found.get('type')!s}, not transactional")
        channel = str(found.get("channel", "")).lower()
        if channel and channel != "email":
            warnings.append(f"sends by {found.get('channel')!s}, not email")
        checks.append(CampaignCheck(mapped.id, [], warnings))
    return checks
