"""The presumed-human clients of real logs that the model scores highest, as a review sheet.

Presumed-human sessions (label source "none") are negatives in training, so the hidden bots
among them are exactly what a reviewer should look at. By default every real session is
scored out of fold: clients are split into `evaluate.suspects.folds` folds, and each fold
is scored by a model trained (as the train stage trains) on the other folds plus the
simulated traffic. `--champion` scores with the registered champion instead; that model
saw the training sessions, so their scores are too low.

The report shows pseudonymized clients only. Paths, referrers and user agents go through
`redact_ips`, so an IP address inside them is replaced by its pseudonym (user-agent product
versions such as "Chrome/131.0.0.0" excepted).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from src.data.pseudonymize import Pseudonymizer, redact_ips
from src.data.sources import LogFile
from src.features.explain import top_reasons
from src.train.dataset import last_rows
from src.train.experiments import Candidate, PreparedData, prepare_data, public_uri, stage_config, trained_candidate, with_rows
from src.train.model_io import feature_matrix, predict_proba
from src.train.tracking import tracking_uri
from src.train.train import fit_booster

logger = logging.getLogger(__name__)

PRESUMED_HUMAN = "none"
SIMULATOR = "simulator"
ASSET = "asset"
# A version in a user agent, e.g. "Chrome/131.0.0.0" or "rv:1.8.1.4", which can look like an IPv4 literal.
VERSION_TOKEN = re.compile(r"[A-Za-z][\w-]*[/:][\d.]+")


@dataclass(frozen=True)
class SuspectSettings:
    """`evaluate.suspects` from the config, and the reason count of `evaluate.top_reasons`."""

    clients: int
    folds: int
    excerpt_requests: int
    excerpt_chars: int
    reasons: int

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "SuspectSettings":
        """Read the settings; raise ValueError for a count below 1 or fewer than 2 folds."""
        settings = cls(
            clients=int(cfg.evaluate.suspects.clients),
            folds=int(cfg.evaluate.suspects.folds),
            excerpt_requests=int(cfg.evaluate.suspects.excerpt_requests),
            excerpt_chars=int(cfg.evaluate.suspects.excerpt_chars),
            reasons=int(cfg.evaluate.top_reasons),
        )
        if min(settings.clients, settings.excerpt_requests, settings.excerpt_chars, settings.reasons) < 1 or settings.folds < 2:
            raise ValueError(f"invalid evaluate.suspects settings {settings}: counts must be at least 1 and folds at least 2")
        return settings


def real_last_rows(prepared: PreparedData) -> pd.DataFrame:
    """Return the last feature row of every real session (any split), with its label columns."""
    labels = prepared.labels[["session_id", "client_key", "client_id", "source", "label_source", "session_start", "session_end"]]
    last = last_rows(prepared.features).drop(columns=["client_key", "source"])
    rows = last.merge(labels, on="session_id", validate="one_to_one")
    return rows[rows["label_source"] != SIMULATOR].reset_index(drop=True)


def client_folds(client_keys: pd.Series, folds: int, seed: int) -> pd.Series:
    """Assign each client to one of `folds` folds at random (fixed by `seed`)."""
    unique = np.sort(client_keys.unique())
    fold = np.random.default_rng(seed).permutation(len(unique)) % folds
    return client_keys.map(dict(zip(unique, fold, strict=True)))


def out_of_fold_scores(prepared: PreparedData, sessions: pd.DataFrame, cfg: DictConfig, folds: int) -> tuple[pd.DataFrame, dict[int, Candidate]]:
    """Score each real session with a model trained without its client's sessions.

    Simulated traffic stays in every fold's training data. Returns the sessions with
    `score`, `threshold` and `fold`, and the model of each fold.
    """
    data = prepared.dataset
    fold_of_session = sessions.set_index("session_id")["fold"]
    row_fold = data.rows["session_id"].map(fold_of_session)
    models: dict[int, Candidate] = {}
    scored = []
    for k in range(folds):
        training = with_rows(data, data.rows[row_fold.ne(k)])
        models[k] = trained_candidate(fit_booster(training, cfg), training, cfg)
        part = sessions[sessions["fold"] == k]
        scores = predict_proba(models[k].booster, feature_matrix(part, models[k].meta.feature_names))
        scored.append(part.assign(score=scores, threshold=models[k].meta.threshold))
        logger.info("fold %d: trained on %d rows, scored %d real sessions", k, len(training.rows), len(part))
    return pd.concat(scored, ignore_index=True), models


def champion_scores(sessions: pd.DataFrame, cfg: DictConfig) -> tuple[pd.DataFrame, dict[int, Candidate]]:
    """Score every real session with the registered champion model (one "fold")."""
    from src.serve.champion import load_champion

    loaded = load_champion(cfg)
    model = Candidate(booster=loaded.booster, meta=loaded.meta)
    scores = predict_proba(model.booster, feature_matrix(sessions, model.meta.feature_names))
    return sessions.assign(fold=0, score=scores, threshold=model.meta.threshold), {0: model}


def top_clients(scored: pd.DataFrame, count: int) -> pd.DataFrame:
    """Return the `count` presumed-human clients with the highest session score, one row each."""
    humans = scored[scored["label_source"] == PRESUMED_HUMAN]
    humans = humans.assign(flagged=humans["score"] >= humans["threshold"])
    best = humans.sort_values(["score", "session_id"], ascending=[False, True]).drop_duplicates("client_key")
    totals = humans.groupby("client_key").agg(
        sessions=("session_id", "size"), requests=("n_requests", "sum"), first_seen=("session_start", "min"),
        last_seen=("session_end", "max"), flagged_sessions=("flagged", "sum"),
    )
    top = best.head(count).merge(totals, left_on="client_key", right_index=True, validate="one_to_one")
    return top.reset_index(drop=True)


def escape_cell(text: str, limit: int) -> str:
    """Shorten text to `limit` characters and escape it for a Markdown table cell."""
    shortened = text if len(text) <= limit else text[: limit - 1] + "…"
    return shortened.replace("\\", "\\\\").replace("|", "\\|").replace("`", "'").replace("\n", " ")


def redact_user_agent(agent: str, pseudonymizer: Pseudonymizer) -> str:
    """Redact IP literals in a user agent, except versions such as "Chrome/131.0.0.0" and "rv:1.8.1.4".

    NOTE: an address written like a version ("bot/192.0.2.1", "host:192.0.2.1") is therefore kept.
    """
    parts, end = [], 0
    for match in VERSION_TOKEN.finditer(agent):
        parts += [redact_ips(agent[end : match.start()], pseudonymizer), match.group()]
        end = match.end()
    parts.append(redact_ips(agent[end:], pseudonymizer))
    return "".join(parts)


def reason_text(model: Candidate, row: pd.DataFrame, descriptions: dict[str, str], count: int) -> str:
    """Return the top reasons of one session's score in plain words, e.g. "requests per minute = 12"."""
    matrix = feature_matrix(row, model.meta.feature_names)
    reasons = top_reasons(model.booster, matrix, model.meta.feature_names, descriptions, count)[0]
    if not reasons:
        return "no feature raised the score"
    return "; ".join(f"{r['text']} = {'n/a' if r['value'] is None else format(r['value'], '.3g')}" for r in reasons)


def request_excerpt(events: pd.DataFrame, settings: SuspectSettings, pseudonymizer: Pseudonymizer) -> list[str]:
    """Render a session's first requests other than assets as Markdown table lines, with IPs in text redacted.

    Assets are left out because a browser loads several per page; the kind counts show them.
    """
    start = events["ts"].min()
    shown = events[events["kind"] != ASSET]
    shown = shown if not shown.empty else events
    lines = ["| +s | method | path | status | referrer |", "|---|---|---|---|---|"]
    for event in shown.head(settings.excerpt_requests).itertuples(index=False):
        offset = (event.ts - start).total_seconds()
        path = escape_cell(redact_ips(event.path, pseudonymizer), settings.excerpt_chars)
        referrer = escape_cell(redact_ips(event.referrer, pseudonymizer), settings.excerpt_chars) or "(none)"
        status = "" if pd.isna(event.status) else int(event.status)
        lines.append(f"| {offset:.0f} | {event.method} | `{path}` | {status} | {referrer} |")
    if len(shown) > settings.excerpt_requests:
        lines.append(f"| … | | {len(shown) - settings.excerpt_requests} more | | |")
    return lines


def format_duration(seconds: float) -> str:
    """Format a duration as seconds, minutes or hours, e.g. "45 s", "12 min", "60.1 h"."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_span(first: pd.Timestamp, last: pd.Timestamp) -> str:
    """Format a time span as "2015-05-17 10:05 – 2015-05-19 22:10 UTC (60.1 h)"."""
    duration = format_duration((last - first).total_seconds())
    return f"{first:%Y-%m-%d %H:%M} – {last:%Y-%m-%d %H:%M} UTC ({duration})"


def client_section(rank: int, client: pd.Series, events: pd.DataFrame, settings: SuspectSettings, pseudonymizer: Pseudonymizer) -> list[str]:
    """Render the evidence of one client: its user agent, sessions and a request excerpt of its top session."""
    agent = escape_cell(redact_user_agent(str(events["user_agent"].iloc[0]), pseudonymizer), 4 * settings.excerpt_chars) or "(empty)"
    kinds = ", ".join(f"{kind} {count}" for kind, count in events["kind"].value_counts().items())
    return [
        f"### {rank}. client `{client['client_id']}`",
        "",
        f"- user agent: `{agent}`",
        f"- log: {client['source']}; presumed-human sessions: {client['sessions']}, requests: {int(client['requests'])}, "
        f"sessions at or above the operating threshold: {client['flagged_sessions']}",
        f"- top session `{client['session_id']}`: score {client['score']:.3f} (threshold {client['threshold']:.3f}), "
        f"requests: {int(client['n_requests'])} ({kinds})",
        f"- why: {client['reasons']}",
        "",
        *request_excerpt(events, settings, pseudonymizer),
        "",
    ]


def summary_table(top: pd.DataFrame, user_agents: dict[str, str], settings: SuspectSettings) -> list[str]:
    """Render the one-line-per-client table with an empty reviewer verdict column."""
    lines = [
        "| rank | client | user agent | sessions | requests | time span | max score | top reasons | reviewer verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for rank, client in enumerate(top.itertuples(index=False), start=1):
        agent = escape_cell(user_agents[client.client_key], settings.excerpt_chars) or "(empty)"
        span = format_span(client.first_seen, client.last_seen)
        lines.append(
            f"| {rank} | `{client.client_id}` | {agent} | {client.sessions} | {int(client.requests)} | {span} | "
            f"{client.score:.3f} | {escape_cell(client.reasons, 4 * settings.excerpt_chars)} | |"
        )
    return lines


def render_report(top: pd.DataFrame, prepared: PreparedData, scored: pd.DataFrame, cfg: DictConfig, context: dict[str, str]) -> str:
    """Render docs/top_presumed_human.md."""
    settings = SuspectSettings.from_config(cfg)
    pseudonymizer = Pseudonymizer.from_config(cfg.data)
    events = prepared.events[prepared.events["session_id"].isin(set(top["session_id"]))]
    by_session = {sid: group for sid, group in events.groupby("session_id", sort=False)}
    user_agents = {row.client_key: redact_user_agent(str(by_session[row.session_id]["user_agent"].iloc[0]), pseudonymizer) for row in top.itertuples()}
    humans = scored[scored["label_source"] == PRESUMED_HUMAN]
    flagged = int((humans["score"] >= humans["threshold"]).sum())

    lines = [
        "# Top presumed-human clients in the real logs",
        "",
        f"Generated by `{context['command']}` on {context['generated']}. Model: {context['model']}.",
        "",
        f"Real presumed-human sessions (label source `none`): {len(humans)} from {humans['client_key'].nunique()} clients; "
        f"{flagged} of them score at or above the operating threshold (1 % FPR on validation presumed-human sessions).",
        "A client is an IP pseudonym plus a user agent. Each client is ranked by its highest-scoring session, "
        "and the reasons are the features that raised that session's score most (XGBoost contributions).",
        "",
        "How to review: judge each client from its evidence and write `bot`, `human` or `unsure` in the last column. "
        "To turn a verdict into a training label, add a row for the session id to `data/labels/reviews.csv`.",
        "",
        *summary_table(top, user_agents, settings),
        "",
        "## Evidence per client",
        "",
    ]
    for rank, client in enumerate(top.to_dict("records"), start=1):
        lines += client_section(rank, pd.Series(client), by_session[client["session_id"]], settings, pseudonymizer)
    return "\n".join(lines).rstrip("\n") + "\n"


def add_reasons(top: pd.DataFrame, scored: pd.DataFrame, models: dict[int, Candidate], cfg: DictConfig) -> pd.DataFrame:
    """Add each top client's reasons, explained by the model that scored its top session."""
    descriptions = dict(cfg.features.descriptions)
    count = int(cfg.evaluate.top_reasons)
    reasons = []
    for client in top.itertuples(index=False):
        row = scored[scored["session_id"] == client.session_id]
        reasons.append(reason_text(models[int(client.fold)], row, descriptions, count))
    return top.assign(reasons=reasons)


def write_suspects(log_files: list[LogFile], cfg: DictConfig, workdir: Path, out: Path, command: str, use_champion: bool = False) -> pd.DataFrame:
    """Prepare the real logs, score every real session, and write the top presumed-human clients to `out`."""
    settings = SuspectSettings.from_config(cfg)
    prepared = prepare_data(log_files, cfg, workdir, with_holdout=False)
    sessions = real_last_rows(prepared)
    if not (sessions["label_source"] == PRESUMED_HUMAN).any():
        raise ValueError(f"the logs {[f.source for f in log_files]} have no presumed-human session to rank")

    if use_champion:
        scored, models = champion_scores(sessions, stage_config(cfg, workdir))
        model = f"`{cfg.mlflow.registered_model}@{cfg.mlflow.champion_alias}` from {public_uri(tracking_uri(cfg))}"
    else:
        sessions = sessions.assign(fold=client_folds(sessions["client_key"], settings.folds, int(cfg.seed)).to_numpy())
        scored, models = out_of_fold_scores(prepared, sessions, cfg, settings.folds)
        model = f"{settings.folds} out-of-fold models trained as the train stage does (real logs + simulation), each scoring clients it never saw"

    top = add_reasons(top_clients(scored, settings.clients), scored, models, cfg)
    context = {"command": command, "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "model": model}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(top, prepared, scored, cfg, context), encoding="utf-8")
    logger.info("wrote %d presumed-human clients to %s", len(top), out)
    return top
