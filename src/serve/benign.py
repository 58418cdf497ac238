"""Cap the decision of declared benign automation (feed readers, uptime monitors) at flag.

Such clients are automated, so their requests stay out of the click statistics (flag), but
blocking them would break the feeds of real subscribers and the owner's own monitoring.
A user agent is easy to copy, so the cap also needs benign behaviour: the click itself is
a feed, robots.txt, HEAD or front-page request, and its session has no affiliate click and
no POST so far. A client that claims to be a feed reader but clicks affiliate links is
still blocked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from omegaconf import DictConfig

from src.features.request_kind import REQUEST_KINDS
from src.serve.settings import ServeConfigError

# Session features that must be 0 for the cap: any affiliate click or POST so far voids it.
AFFILIATE_SHARE = "share_affiliate"
POST_SHARE = "share_post"
CAPPED_REASON = {
    "feature": "benign_automation",
    "text": "declared feed reader or monitor making only feed-like requests: flagged, never blocked",
    "value": 1.0,
    "contribution": None,
}


@dataclass(frozen=True)
class BenignAutomation:
    """The rule that turns `block` into `flag` for declared benign automation."""

    user_agent: re.Pattern[str] | None
    kinds: frozenset[str]
    paths: frozenset[str]
    methods: frozenset[str]
    affiliate_column: int
    post_column: int

    @classmethod
    def from_config(cls, node: DictConfig, feature_names: Sequence[str]) -> BenignAutomation:
        """Read `serve.benign_automation`; raises ServeConfigError naming a bad value."""
        patterns = [str(p) for p in node.user_agent_patterns]
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ServeConfigError(
                    f"invalid regex {pattern!r} in serve.benign_automation.user_agent_patterns: {err}"
                ) from err
        kinds = frozenset(str(k) for k in node.request_kinds)
        unknown = sorted(kinds - set(REQUEST_KINDS))
        if unknown:
            raise ServeConfigError(
                f"unknown request kinds {unknown} in serve.benign_automation.request_kinds; expected some of {list(REQUEST_KINDS)}"
            )
        joined = re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE) if patterns else None
        names = list(feature_names)
        return cls(
            joined, kinds, frozenset(str(p) for p in node.paths), frozenset(str(m).upper() for m in node.methods),
            _column(names, AFFILIATE_SHARE), _column(names, POST_SHARE),
        )  # fmt: skip

    def applies(self, fields: dict[str, Any], kind: str, vector: Sequence[float]) -> bool:
        """Return True when the click is from declared benign automation behaving as such."""
        if self.user_agent is None or not self.user_agent.search(fields["user_agent"] or ""):
            return False

        benign_request = kind in self.kinds or fields["path"] in self.paths or fields["method"] in self.methods
        clean_session = vector[self.affiliate_column] == 0 and vector[self.post_column] == 0
        return benign_request and clean_session


def _column(names: list[str], feature: str) -> int:
    if feature not in names:
        raise ServeConfigError(f"serve.benign_automation needs the feature {feature!r} in features.names")
    return names.index(feature)
