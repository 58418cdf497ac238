"""Run the traffic families against one simulated site and collect requests and clients.

Each family draws from its own random generator, seeded from the run seed and the family
name, so a family's behaviour does not depend on which other families run. Addresses come
from one shared pool (seeded separately) because no two clients may share an (ip, user agent)
pair.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from src.data.simulator.abuse import (
    simulate_click_fraud,
    simulate_credential_stuffing,
    simulate_form_spam,
    simulate_vulnerability_scanners,
)
from src.data.simulator.addresses import AddressPool
from src.data.simulator.automation import simulate_feed_readers, simulate_uptime_monitors
from src.data.simulator.browsing import build_navigation
from src.data.simulator.crawlers import (
    simulate_content_scrapers,
    simulate_declared_crawlers,
    simulate_headless_browsers,
)
from src.data.simulator.humans import simulate_human_nat, simulate_humans
from src.data.simulator.settings import Settings
from src.data.simulator.site import build_site
from src.data.simulator.world import Client, FamilyRun, Request, UserAgentPools, World, build_clock

SECTION = "simulate"


@dataclass(frozen=True)
class FamilySpec:
    """One traffic family: its generator and the ground-truth flags of its clients."""

    name: str
    generate: Callable[[FamilyRun], None]
    is_bot: int
    automated: int


FAMILY_SPECS: tuple[FamilySpec, ...] = (
    FamilySpec("human_desktop", simulate_humans, is_bot=0, automated=0),
    FamilySpec("human_mobile", simulate_humans, is_bot=0, automated=0),
    FamilySpec("human_nat", simulate_human_nat, is_bot=0, automated=0),
    FamilySpec("declared_crawler", simulate_declared_crawlers, is_bot=1, automated=1),
    FamilySpec("content_scraper", simulate_content_scrapers, is_bot=1, automated=1),
    FamilySpec("click_fraud", simulate_click_fraud, is_bot=1, automated=1),
    FamilySpec("form_spam", simulate_form_spam, is_bot=1, automated=1),
    FamilySpec("credential_stuffing", simulate_credential_stuffing, is_bot=1, automated=1),
    FamilySpec("vuln_scanner", simulate_vulnerability_scanners, is_bot=1, automated=1),
    FamilySpec("headless_browser", simulate_headless_browsers, is_bot=1, automated=1),
    FamilySpec("feed_reader", simulate_feed_readers, is_bot=0, automated=1),
    FamilySpec("uptime_monitor", simulate_uptime_monitors, is_bot=0, automated=1),
)
FAMILIES: tuple[str, ...] = tuple(spec.name for spec in FAMILY_SPECS)
SPECS_BY_NAME: dict[str, FamilySpec] = {spec.name: spec for spec in FAMILY_SPECS}
FAMILY_POLICY: dict[str, tuple[int, int]] = {spec.name: (spec.is_bot, spec.automated) for spec in FAMILY_SPECS}
# Click fraud claims whole /24 blocks for its proxies, so it draws addresses before any
# other family scatters single addresses over the blocks.
FIRST_FAMILY = "click_fraud"


@dataclass(frozen=True)
class FamilyCounts:
    """Output of one family: clients, visits (bursts of activity it planned) and requests."""

    clients: int
    visits: int
    requests: int


@dataclass
class SimulationResult:
    """Requests in generation order, clients in registration order, and counts per family."""

    requests: list[Request]
    clients: list[Client]
    counts: dict[str, FamilyCounts]


def run_simulation(cfg: Settings, seed: int, families: Sequence[str], scale: float) -> SimulationResult:
    """Simulate the selected families with counts multiplied by `scale`."""
    family_settings = _family_settings(cfg)
    world = World(
        site=build_site(cfg.section("site"), str(cfg.raw("site_host")), _rng(seed, "site")),
        clock=build_clock(cfg),
        addresses=AddressPool(cfg.section("addresses"), _rng(seed, "addresses")),
        user_agents=UserAgentPools(cfg.section("user_agents")),
        referrers=cfg.section("referrers"),
        navigation=build_navigation(cfg.section("navigation")),
        family_settings=family_settings,
    )

    requests: list[Request] = []
    counts: dict[str, FamilyCounts] = {}
    ordered = sorted(families, key=lambda name: name != FIRST_FAMILY)
    for name in ordered:
        spec = SPECS_BY_NAME[name]
        settings = family_settings[spec.name]
        count = scaled_count(int(settings.number("count")), scale)
        run = FamilyRun(spec.name, settings, _rng(seed, spec.name), world, count)
        spec.generate(run)
        requests.extend(run.requests)
        counts[spec.name] = FamilyCounts(run.client_count, run.visits, len(run.requests))

    ordered_counts = {name: counts[name] for name in FAMILIES if name in counts}
    return SimulationResult(requests=requests, clients=world.registry.clients, counts=ordered_counts)


def scaled_count(count: int, scale: float) -> int:
    """Multiply a family count by `scale`, keeping at least one unit of a family whose count is positive."""
    if count <= 0:
        return 0
    return max(1, int(round(count * scale)))


def _family_settings(cfg: Settings) -> dict[str, Settings]:
    """Return validated settings for every family; raise ValueError for missing or unknown families."""
    families = cfg.section("families")
    missing = [name for name in FAMILIES if name not in families]
    unknown = [name for name in families.keys() if name not in FAMILIES]
    if missing or unknown:
        raise ValueError(
            f"invalid {families.where}: missing families {missing}, unknown families {unknown}; "
            f"configure exactly {list(FAMILIES)}"
        )
    settings = {name: families.section(name) for name in FAMILIES}
    for name, section in settings.items():
        section.validate()
        if int(section.number("count")) != section.number("count"):
            raise ValueError(f"invalid {section.where}.count={section.raw('count')}: expected a whole number")
    return settings


def _rng(seed: int, stream: str) -> np.random.Generator:
    """Return the random generator of one named stream (a family, the site, the address pool)."""
    return np.random.default_rng([seed, zlib.crc32(stream.encode("utf-8"))])
