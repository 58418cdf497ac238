"""Classify a request path as robots, affiliate, feed, asset, page or other.

Preprocess and the scoring service both call `RequestKindClassifier.classify`, so a
click is given the same kind in training and in serving.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from omegaconf import DictConfig

ROBOTS = "robots"
AFFILIATE = "affiliate"
FEED = "feed"
ASSET = "asset"
PAGE = "page"
OTHER = "other"
REQUEST_KINDS: tuple[str, ...] = (PAGE, ASSET, FEED, ROBOTS, AFFILIATE, OTHER)


def _compile_any(patterns: Sequence[str], key: str) -> re.Pattern[str] | None:
    """Join patterns into one case-insensitive regex, naming the config key when one is invalid."""
    if not patterns:
        return None
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regex {pattern!r} in data.preprocess.{key}: {exc}") from exc
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


def _matches(rule: re.Pattern[str] | None, text: str) -> bool:
    return rule is not None and rule.search(text) is not None


@dataclass(frozen=True)
class RequestKindClassifier:
    """Ordered path rules; the first matching kind wins and unmatched paths are pages."""

    robots: re.Pattern[str] | None
    affiliate: re.Pattern[str] | None
    feed: re.Pattern[str] | None
    feed_query: re.Pattern[str] | None
    asset: re.Pattern[str] | None

    @classmethod
    def from_config(cls, preprocess_cfg: DictConfig) -> "RequestKindClassifier":
        """Build the classifier from `data.preprocess` in the config."""
        return cls(
            robots=_compile_any(list(preprocess_cfg.robots_patterns), "robots_patterns"),
            affiliate=_compile_any(list(preprocess_cfg.affiliate_patterns), "affiliate_patterns"),
            feed=_compile_any(list(preprocess_cfg.feed_patterns), "feed_patterns"),
            feed_query=_compile_any(list(preprocess_cfg.feed_query_patterns), "feed_query_patterns"),
            asset=_compile_any(list(preprocess_cfg.asset_patterns), "asset_patterns"),
        )

    def classify(self, path: str) -> str:
        """Return the kind of one request path.

        Patterns match the path without its query string, except `feed_query_patterns`,
        which match the query string. A request whose path could not be read (empty, or
        not starting with "/") is "other".
        """
        if not path or not path.startswith("/"):
            return OTHER

        bare_path, _, query = path.partition("?")
        if _matches(self.robots, bare_path):
            return ROBOTS
        if _matches(self.affiliate, bare_path):
            return AFFILIATE
        if _matches(self.feed, bare_path) or (query and _matches(self.feed_query, query)):
            return FEED
        if _matches(self.asset, bare_path):
            return ASSET
        return PAGE
