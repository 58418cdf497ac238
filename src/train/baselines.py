"""The two rules every model is compared with: a user-agent list and a request rate.

The user-agent-list rule flags declared crawlers (crawlerdetect). The request-rate rule
scores a request by its session's requests per minute so far, a point-in-time feature.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
from crawlerdetect import CrawlerDetect

UA_LIST = "ua_list"
RATE_RULE = "rate_rule"
USER_AGENT_CACHE_SIZE = 65536


@lru_cache(maxsize=1)
def _detector() -> CrawlerDetect:
    return CrawlerDetect()


@lru_cache(maxsize=USER_AGENT_CACHE_SIZE)
def is_declared_crawler(user_agent: str) -> bool:
    """Tell whether crawlerdetect lists this user agent as a crawler."""
    return bool(_detector().isCrawler(user_agent))


def ua_list_scores(user_agents: pd.Series) -> np.ndarray:
    """Return 1.0 for rows whose user agent is a declared crawler, else 0.0."""
    return np.array([float(is_declared_crawler(ua)) for ua in user_agents], dtype=np.float64)


def rate_rule_scores(rows: pd.DataFrame, rate_feature: str) -> np.ndarray:
    """Return the request-rate score of each row."""
    return rows[rate_feature].to_numpy(dtype=np.float64)
