"""Benign automation: feed readers and uptime monitors, which poll on a fixed period.

Each poll counts as one visit. Polls run from a random phase within the first period until
the end of the simulated window.
"""

from __future__ import annotations

from src.data.simulator.world import FamilyRun


def simulate_feed_readers(run: FamilyRun) -> None:
    """Simulate `count` feed readers fetching the feed; unchanged feeds get 304."""
    settings, rng, site = run.settings, run.rng, run.site
    feed = site.path("feed")
    for _ in range(run.count):
        client = run.new_client()
        first = True
        for ts in _poll_times(run):
            changed = first or rng.random() < settings.prob("changed_prob")
            run.emit(client, ts, "GET", feed, 200 if changed else 304, site.size("feed"))
            run.visits += 1
            first = False


def simulate_uptime_monitors(run: FamilyRun) -> None:
    """Simulate `count` uptime monitors, each checking one path with one method (HEAD or GET)."""
    settings, rng, site = run.settings, run.rng, run.site
    path = str(settings.raw("path"))
    page = next((candidate for candidate in site.pages if candidate.path == path), None)
    size = page.size if page is not None else site.home.size
    for _ in range(run.count):
        client = run.new_client()
        method = settings.choose("methods", rng)
        for ts in _poll_times(run):
            run.emit(client, ts, method, path, 200, size)
            run.visits += 1


def _poll_times(run: FamilyRun) -> list[float]:
    """Return the poll times of one client: a fixed period with small jitter, over the whole window."""
    settings, rng = run.settings, run.rng
    period = settings.dist("period_s").draw(rng)
    if period <= 0:
        raise ValueError(f"invalid {settings.where}.period_s draw {period}: periods must be positive")
    jitter = settings.dist("jitter_s")
    times: list[float] = []
    # The first poll falls inside the window even when the period is longer than the window.
    ts = run.clock.start + float(rng.uniform(0.0, min(period, run.clock.end - run.clock.start)))
    while ts < run.clock.end:
        times.append(ts)
        # Jitter never shortens a step below half a period, so polls stay in order.
        ts += max(period + jitter.draw(rng), period / 2)
    return times
