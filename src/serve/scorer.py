"""Score click events one by one with the pipeline's own feature code.

Each click goes through the collect stage's pseudonymizer, preprocess's request-kind
classifier and client key, and `OnlineSessionTracker`, which runs the featurize stage's
`SessionFeatureState`. So a click gets the features and the probability that the batch
pipeline gives the same request.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Sequence

import numpy as np
from omegaconf import DictConfig

from src.data.click_event import ClickEvent
from src.data.pseudonymize import Pseudonymizer
from src.features.explain import top_reasons
from src.features.online import OnlineSessionTracker
from src.features.request_kind import RequestKindClassifier
from src.features.session_features import FeatureSettings, RequestEvent, check_feature_names
from src.features.sessions import client_key
from src.serve.benign import CAPPED_REASON, BenignAutomation
from src.serve.model_watcher import RULES_VERSION, ActiveModel
from src.serve.settings import ALLOW, BLOCK, FLAG, ServeSettings
from src.train.baselines import is_declared_crawler
from src.train.model_io import predict_proba_rows

logger = logging.getLogger(__name__)

Reason = dict[str, Any]
# Probability, decision, model version and reasons of one click.
Outcome = tuple[float, str, str, list[Reason]]


@dataclass
class ScoredClick:
    """The service's response for one click, and the row it stores."""

    bot_probability: float
    decision: str
    model_version: str
    session_id: str
    reasons: list[Reason]
    features: list[float]
    record: dict[str, Any]


@dataclass
class TrackedClick:
    """A click after pseudonymization and sessionization, waiting to be scored."""

    fields: dict[str, Any]
    session_id: str
    vector: list[float]
    # Reasons for this click whatever its decision (the request's ?explain=true).
    explain: bool
    # Request kind (src.features.request_kind), for the benign automation rule.
    kind: str


def decide(probability: float, flag_threshold: float, block_threshold: float) -> str:
    """Return allow below the flag threshold, block above the block threshold, else flag."""
    if probability > block_threshold:
        return BLOCK
    if probability >= flag_threshold:
        return FLAG
    return ALLOW


def finite_or_none(value: float) -> float | None:
    """Return the value, or None for NaN (no JSON number can hold NaN)."""
    return None if math.isnan(value) else value


class ClickScorer:
    """Per-client session state plus the scoring of clicks with a model or the rule fallback."""

    def __init__(self, cfg: DictConfig, settings: ServeSettings) -> None:
        self.feature_settings = FeatureSettings.from_config(cfg.features)
        check_feature_names(self.feature_settings)
        self.feature_names = list(self.feature_settings.names)
        self.tracker = OnlineSessionTracker(
            self.feature_settings, float(cfg.data.preprocess.inactivity_gap_s), settings.max_clients
        )
        self.classifier = RequestKindClassifier.from_config(cfg.data.preprocess)
        self.pseudonymizer = Pseudonymizer.from_config(cfg.data)
        self.descriptions = {str(k): str(v) for k, v in cfg.features.descriptions.items()}
        self._settings = settings
        self._rate_column = self.feature_names.index(str(cfg.evaluate.rate_rule_feature))
        self.benign = BenignAutomation.from_config(cfg.serve.benign_automation, self.feature_names)

    def score(self, events: Sequence[ClickEvent], model: ActiveModel | None, explain_all: bool) -> list[ScoredClick]:
        """Add the clicks to their sessions in the given order and score them together."""
        return self.score_tracked(self.track(events, explain_all), model)

    def track(self, events: Sequence[ClickEvent], explain_all: bool) -> list[TrackedClick]:
        """Pseudonymize the clicks and add them to their sessions, in the given order."""
        return [self._track(event, explain_all) for event in events]

    def score_tracked(self, tracked: Sequence[TrackedClick], model: ActiveModel | None) -> list[ScoredClick]:
        """Score tracked clicks in one prediction, with `model` or, when it is None, the rules.

        Reasons are given for clicks whose decision is in `serve.explain_decisions`, and
        for clicks tracked with `explain_all`.
        """
        matrix = np.asarray([click.vector for click in tracked], dtype=np.float64)
        if model is None:
            outcomes = self._score_rules(tracked, matrix)
        else:
            outcomes = self._score_model(model, matrix, [click.explain for click in tracked])

        outcomes = [self._cap_benign(click, outcome) for click, outcome in zip(tracked, outcomes, strict=True)]
        received_at = datetime.now(UTC)
        return [
            self._result(click, probability, decision, version, reasons, received_at)
            for click, (probability, decision, version, reasons) in zip(tracked, outcomes, strict=True)
        ]

    def _track(self, event: ClickEvent, explain: bool) -> TrackedClick:
        fields = event.to_raw_fields()
        client_id, prefix_id = self.pseudonymizer.pseudonyms(fields.pop("client_ip"))
        fields["client_id"], fields["prefix_id"] = client_id, prefix_id
        request = RequestEvent(
            ts=event.ts.timestamp(),
            method=fields["method"],
            path=fields["path"],
            protocol=fields["protocol"],
            status=fields["status"],
            bytes=fields["bytes"],
            referrer=fields["referrer"],
            user_agent=fields["user_agent"],
            kind=self.classifier.classify(fields["path"]),
        )
        session_id, vector = self.tracker.update(client_key(client_id, event.user_agent), request)
        return TrackedClick(fields, session_id, vector, explain, request.kind)

    def _cap_benign(self, click: TrackedClick, outcome: Outcome) -> Outcome:
        """Turn `block` into `flag` for declared benign automation (src/serve/benign.py), with a reason."""
        probability, decision, version, reasons = outcome
        if decision != BLOCK or not self.benign.applies(click.fields, click.kind, click.vector):
            return outcome
        return probability, FLAG, version, [dict(CAPPED_REASON), *reasons]

    def _score_model(
        self, model: ActiveModel, matrix: np.ndarray, explain: list[bool]
    ) -> list[Outcome]:
        columns = matrix[:, model.columns]
        probabilities, data = predict_proba_rows(model.loaded.booster, columns)
        decisions = [decide(float(p), model.flag_threshold, model.block_threshold) for p in probabilities]

        reasons: list[list[Reason]] = [[] for _ in decisions]
        explained_rows = [i for i, d in enumerate(decisions) if explain[i] or d in self._settings.explain_decisions]
        if explained_rows and self._settings.top_reasons > 0:
            # Reuse the prediction's DMatrix when every row is explained, as for most single clicks.
            reuse = data if len(explained_rows) == len(decisions) else None
            explained = top_reasons(
                model.loaded.booster, columns[explained_rows], model.loaded.meta.feature_names,
                self.descriptions, self._settings.top_reasons, self._settings.approximate_reasons, reuse,
            )
            for index, row_reasons in zip(explained_rows, explained, strict=True):
                reasons[index] = row_reasons
        return [(float(p), d, model.version, r) for p, d, r in zip(probabilities, decisions, reasons, strict=True)]

    def _score_rules(self, tracked: Sequence[TrackedClick], matrix: np.ndarray) -> list[Outcome]:
        rules = self._settings.rules
        outcomes = []
        for click, rate in zip(tracked, matrix[:, self._rate_column], strict=True):
            reasons = []
            if is_declared_crawler(click.fields["user_agent"]):
                reasons.append({"feature": "declared_crawler", "text": "user agent of a declared crawler (crawlerdetect)",
                                "value": 1.0, "contribution": None})
            if rate > rules.max_rate_per_min:
                reasons.append({"feature": "request_rate_per_min", "text": f"more than {rules.max_rate_per_min:g} requests per minute",
                                "value": float(rate), "contribution": None})
            if reasons:
                outcomes.append((rules.probability_when_matched, rules.decision_when_matched, RULES_VERSION, reasons))
            else:
                outcomes.append((0.0, ALLOW, RULES_VERSION, []))
        return outcomes

    def _result(
        self, click: TrackedClick, probability: float, decision: str, version: str, reasons: list[Reason],
        received_at: datetime,
    ) -> ScoredClick:
        record = dict(click.fields)
        del record["source_format"]
        record.update(
            session_id=click.session_id, bot_probability=probability, decision=decision,
            model_version=version, received_at=received_at,
        )
        return ScoredClick(probability, decision, version, click.session_id, reasons, click.vector, record)

    def feature_map(self, vector: list[float]) -> dict[str, float | None]:
        """Return the feature vector by name, with None for a missing value."""
        return {name: finite_or_none(value) for name, value in zip(self.feature_names, vector, strict=True)}
