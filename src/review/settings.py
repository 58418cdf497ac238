"""Typed settings of human review, read from the `review` config group."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig



class ReviewConfigError(ValueError):
    """A `review` setting with an invalid value; the message names the key."""


def config_group(cfg: DictConfig, group: str) -> DictConfig:
    """Return `cfg.<group>`, or raise KeyError saying how to rebuild a params file that lacks it."""
    if group not in cfg:
        raise KeyError(f"the config has no {group!r} group; run `botclick params` to recompose params.yaml from conf/")
    return cfg[group]


def _require(condition: bool, key: str, value: Any, expected: str) -> None:
    if not condition:
        raise ReviewConfigError(f"invalid review.{key}={value!r}: {expected}; fix it in conf/review/default.yaml")


@dataclass(frozen=True)
class WebSettings:
    """The review page's address, token variable and cookie."""

    host: str
    port: int
    token_env: str
    min_token_chars: int
    cookie_name: str
    log_level: str


@dataclass(frozen=True)
class ReviewSettings:
    """Everything `botclick review` reads from `review`, checked once."""

    queue_path: Path
    reviews_path: Path
    flag_decisions: frozenset[str]
    uncertain_low: float
    uncertain_high: float
    max_requests_per_item: int
    terminal_requests_shown: int
    max_text_chars: int
    max_note_chars: int
    reviewer_env: str
    review_labels: dict[str, int]
    web: WebSettings

    @classmethod
    def from_config(cls, cfg: DictConfig) -> ReviewSettings:
        """Read `cfg.review` and `paths.reviews`."""
        review = config_group(cfg, "review")
        web = review.web
        settings = cls(
            queue_path=Path(str(review.queue_path)),
            reviews_path=Path(str(cfg.paths.reviews)),
            flag_decisions=frozenset(str(d) for d in review.flag_decisions),
            uncertain_low=float(review.uncertain_low),
            uncertain_high=float(review.uncertain_high),
            max_requests_per_item=int(review.max_requests_per_item),
            terminal_requests_shown=int(review.terminal_requests_shown),
            max_text_chars=int(review.max_text_chars),
            max_note_chars=int(review.max_note_chars),
            reviewer_env=str(review.reviewer_env),
            review_labels={str(k): int(v) for k, v in cfg.labels.review_labels.items()},
            web=WebSettings(
                host=str(web.host), port=int(web.port), token_env=str(web.token_env),
                min_token_chars=int(web.min_token_chars), cookie_name=str(web.cookie_name), log_level=str(web.log_level),
            ),
        )
        settings._check()
        return settings

    def _check(self) -> None:
        low, high = self.uncertain_low, self.uncertain_high
        _require(0.0 <= low <= high <= 1.0, "uncertain_low", (low, high), "expected 0 <= uncertain_low <= uncertain_high <= 1")
        _require(self.max_requests_per_item >= 1, "max_requests_per_item", self.max_requests_per_item, "expected at least 1")
        _require(self.terminal_requests_shown >= 1, "terminal_requests_shown", self.terminal_requests_shown, "expected at least 1")
        _require(self.max_text_chars >= 8, "max_text_chars", self.max_text_chars, "expected at least 8")
        _require(self.max_note_chars >= 0, "max_note_chars", self.max_note_chars, "expected 0 or more")
        _require(self.web.min_token_chars >= 16, "web.min_token_chars", self.web.min_token_chars, "expected at least 16")
        _require(self.web.cookie_name.isidentifier(), "web.cookie_name", self.web.cookie_name, "expected a plain name")

    def reviewer(self, given: str | None = None) -> str:
        """Return the reviewer name: `given`, else the reviewer_env variable, else the OS user."""
        name = (given or os.environ.get(self.reviewer_env, "") or getpass.getuser()).strip()
        if not name:
            raise ReviewConfigError(f"empty reviewer name; pass --reviewer or set {self.reviewer_env}")
        return name
