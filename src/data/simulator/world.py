"""Shared state of one simulation run: clock, clients, user agents and the requests emitted.

Every family generator receives a FamilyRun. It registers clients through `new_client`,
which guarantees that no (ip, user agent) pair is used by two clients, and records requests
through `emit`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from src.data.simulator.addresses import AddressPool
from src.data.simulator.settings import Settings
from src.data.simulator.site import Site

if TYPE_CHECKING:
    from src.data.simulator.browsing import Navigation

UTC_OFFSET_PATTERN = re.compile(r"^([+-])(\d{2})(\d{2})$")
# Characters that would break the quoted user-agent field of a combined log line.
FORBIDDEN_UA_CHARACTERS = re.compile(r'["\\\x00-\x1f\x7f]')
SECONDS_PER_DAY = 86400
HOURS_PER_DAY = 24


class Request(NamedTuple):
    """One access-log line before formatting; `size` None is written as "-"."""

    ts: float
    ip: str
    method: str
    path: str
    protocol: str
    status: int
    size: int | None
    referrer: str
    user_agent: str


@dataclass(frozen=True)
class Client:
    """One simulated client: the (ip, user agent) pair that the pipeline keys on."""

    ip: str
    user_agent: str
    protocol: str
    family: str


@dataclass(frozen=True)
class Clock:
    """The simulated time window, in Unix seconds, with the daily cycle of human traffic."""

    start: float
    end: float
    peak_hour_utc: float
    amplitude: float

    def is_over(self, ts: float) -> bool:
        """Return whether `ts` is at or after the end of the window, so no new visit may start."""
        return ts >= self.end

    def uniform_start(self, rng: np.random.Generator) -> float:
        """Draw a start time uniformly from the window."""
        return float(rng.uniform(self.start, self.end))

    def diurnal_start(self, rng: np.random.Generator) -> float:
        """Draw a start time whose hour of day follows the configured daily cycle (rejection sampling)."""
        while True:
            ts = self.uniform_start(rng)
            hour = (ts % SECONDS_PER_DAY) / 3600.0
            weight = 1.0 + self.amplitude * math.cos(2.0 * math.pi * (hour - self.peak_hour_utc) / HOURS_PER_DAY)
            if rng.random() * (1.0 + self.amplitude) <= weight:
                return ts


def build_clock(cfg: Settings) -> Clock:
    """Build the clock from `simulate.start`, `simulate.days` and `simulate.diurnal`."""
    text = str(cfg.raw("start"))
    try:
        start = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"invalid simulate.start={text!r}: expected ISO 8601 such as 2026-11-02T00:00:00+00:00") from exc
    if start.tzinfo is None:
        raise ValueError(f"invalid simulate.start={text!r}: add a UTC offset such as +00:00")

    days = cfg.number("days", minimum=0.0)
    if days <= 0:
        raise ValueError(f"invalid simulate.days={days}: expected a positive number of days")
    diurnal = cfg.section("diurnal")
    amplitude = diurnal.number("amplitude")
    if amplitude >= 1.0:
        raise ValueError(f"invalid simulate.diurnal.amplitude={amplitude}: expected a value from 0 to below 1")
    begin = start.timestamp()
    return Clock(begin, begin + days * SECONDS_PER_DAY, diurnal.number("peak_hour_utc"), amplitude)


def parse_utc_offset(text: str) -> timezone:
    """Parse an offset such as "+0000" or "-0530" into a timezone."""
    match = UTC_OFFSET_PATTERN.match(text)
    if match is None:
        raise ValueError(f"invalid simulate.utc_offset={text!r}: expected +HHMM or -HHMM, such as +0000")
    sign = -1 if match.group(1) == "-" else 1
    return timezone(sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3))))


class UserAgentPools:
    """Named lists of user-agent strings from `simulate.user_agents`."""

    def __init__(self, cfg: Settings) -> None:
        self.pools: dict[str, list[str]] = {}
        for name in cfg.keys():
            strings = [str(ua) for ua in cfg.raw(name)]
            if not strings:
                raise ValueError(f"invalid simulate.user_agents.{name}: the pool is empty")
            for ua in strings:
                if FORBIDDEN_UA_CHARACTERS.search(ua) or not ua.strip():
                    raise ValueError(
                        f"invalid user agent {ua!r} in simulate.user_agents.{name}: "
                        "remove double quotes, backslashes and control characters"
                    )
            self.pools[name] = strings

    def pool(self, name: str, where: str) -> list[str]:
        """Return the pool `name`; `where` names the config key that referenced it in errors."""
        if name not in self.pools:
            raise ValueError(f"unknown user-agent pool {name!r} at {where}; define it under simulate.user_agents")
        return self.pools[name]


@dataclass
class ClientRegistry:
    """All clients of a run in registration order, keyed by their (ip, user agent) pair."""

    clients: list[Client] = field(default_factory=list)
    pairs: dict[tuple[str, str], str] = field(default_factory=dict)

    def register(self, client: Client) -> None:
        """Record a client; raise ValueError when its (ip, user agent) pair already belongs to a client."""
        pair = (client.ip, client.user_agent)
        if pair in self.pairs:
            raise ValueError(
                f"simulator bug: client pair reused by families {self.pairs[pair]} and {client.family}; "
                "every (ip, user agent) pair must belong to one client"
            )
        self.pairs[pair] = client.family
        self.clients.append(client)


@dataclass
class World:
    """State shared by all families of one run."""

    site: Site
    clock: Clock
    addresses: AddressPool
    user_agents: UserAgentPools
    referrers: Settings
    navigation: Navigation
    family_settings: dict[str, Settings]
    registry: ClientRegistry = field(default_factory=ClientRegistry)

    def referrer(self, kind: str, rng: np.random.Generator) -> str:
        """Draw one URL of the referrer list `kind` (search, social, spam)."""
        urls = [str(url) for url in self.referrers.raw(kind)]
        return urls[int(rng.integers(len(urls)))]


@dataclass
class FamilyRun:
    """One family's generator state: its settings, RNG, client count and emitted requests."""

    name: str
    settings: Settings
    rng: np.random.Generator
    world: World
    count: int
    requests: list[Request] = field(default_factory=list)
    client_count: int = 0
    visits: int = 0

    @property
    def site(self) -> Site:
        return self.world.site

    @property
    def clock(self) -> Clock:
        return self.world.clock

    def new_client(self, ip: str | None = None, user_agent: str | None = None, protocol: str | None = None) -> Client:
        """Register a client of this family; draw address, user agent and protocol from the family unless given."""
        if user_agent is None:
            user_agent = self.draw_user_agent()
        if ip is None:
            ip = self.world.addresses.draw()
        if protocol is None:
            protocol = self.settings.choose("protocols", self.rng)
        client = Client(ip=ip, user_agent=user_agent, protocol=protocol, family=self.name)
        self.world.registry.register(client)
        self.client_count += 1
        return client

    def draw_user_agent(self) -> str:
        """Draw a pool by this family's `user_agents` weights, then one user agent of that pool."""
        pool_name = self.settings.choose("user_agents", self.rng)
        pool = self.world.user_agents.pool(pool_name, f"{self.settings.where}.user_agents")
        return pool[int(self.rng.integers(len(pool)))]

    def emit(
        self, client: Client, ts: float, method: str, path: str, status: int, size: int | None, referrer: str = "-"
    ) -> None:
        """Record one request of `client`; HEAD requests and 304 responses carry no body."""
        if method == "HEAD" or status == 304:
            size = None
        self.requests.append(
            Request(ts, client.ip, method, path, client.protocol, status, size, referrer, client.user_agent)
        )
