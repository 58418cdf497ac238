"""Structural user-agent features.

These describe the shape of the string, not who sent it: there is no crawler list
here, because the labels come from one and the model must learn behaviour instead.
"""

from __future__ import annotations

import re

_URL = re.compile(r"https?://|www\.|\+http|@", re.IGNORECASE)
_COMPATIBLE = re.compile(r"\bcompatible\b", re.IGNORECASE)


def user_agent_features(user_agent: str) -> dict[str, float]:
    """Return the structural features of one user-agent string."""
    ua = user_agent.strip()
    return {
        "ua_length": float(len(ua)),
        "ua_tokens": float(len(ua.split())),
        "ua_is_empty": float(ua in ("", "-")),
        "ua_mozilla_prefix": float(ua.startswith("Mozilla/")),
        "ua_has_url": float(bool(_URL.search(ua))),
        "ua_has_compatible": float(bool(_COMPATIBLE.search(ua))),
        "ua_paren_groups": float(ua.count("(")),
    }
