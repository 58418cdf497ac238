"""Replace a session's user agent with a browser one, as a lying bot would.

The user agent enters the features only through `user_agent_features`, and sessions keep
their boundaries, so masking a session means recomputing those columns alone. A test
checks this against re-featurizing masked events.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from src.features.user_agent import user_agent_features


def browser_agent_for(session_id: str, browser_user_agents: Sequence[str]) -> str:
    """Pick a browser user agent for a session, stable across runs."""
    index = sum(session_id.encode("utf-8")) % len(browser_user_agents)
    return browser_user_agents[index]


def mask_user_agents(
    features: pd.DataFrame, session_ids: set[str], browser_user_agents: Sequence[str]
) -> pd.DataFrame:
    """Return a copy of `features` where the rows of `session_ids` look like browser traffic."""
    if not browser_user_agents:
        raise ValueError("evaluate.browser_user_agents is empty; list at least one browser user agent")

    masked = features.copy()
    rows = masked["session_id"].isin(session_ids)
    if not rows.any():
        return masked
    replacement = masked.loc[rows, "session_id"].map(lambda sid: browser_agent_for(sid, browser_user_agents))
    ua_columns = list(user_agent_features("").keys())
    values = pd.DataFrame([user_agent_features(ua) for ua in replacement], index=replacement.index)
    masked.loc[rows, ua_columns] = values[ua_columns].to_numpy()
    return masked


def borrow_user_agents(
    features: pd.DataFrame, session_ids: set[str], donor_sessions: pd.DataFrame, rng: np.random.Generator
) -> pd.DataFrame:
    """Return a copy where each session in `session_ids` takes the user agent of a random donor session.

    Copying the donor's user-agent columns equals replaying the session with the donor's
    user agent, because those columns depend on the user agent alone. Training uses real
    browser user agents from its own presumed-human sessions this way, so the model cannot
    learn the fixed list that evaluation masks with.
    """
    if not session_ids:
        return features.copy()
    ua_columns = list(user_agent_features("").keys())
    donors = donor_sessions[ua_columns].drop_duplicates().to_numpy()
    if len(donors) == 0:
        raise ValueError("no donor sessions to borrow user agents from; the training set needs presumed-human sessions")

    masked = features.copy()
    ordered_ids = sorted(session_ids)
    picks = dict(zip(ordered_ids, rng.integers(0, len(donors), size=len(ordered_ids)).tolist(), strict=True))
    rows = masked["session_id"].isin(session_ids)
    chosen = masked.loc[rows, "session_id"].map(picks).to_numpy()
    masked.loc[rows, ua_columns] = donors[chosen]
    return masked
