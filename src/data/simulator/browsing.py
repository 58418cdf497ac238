"""Browser behaviour shared by humans and headless browsers: page views with cached assets and navigation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from src.data.simulator.settings import Settings
from src.data.simulator.site import Page, Site
from src.data.simulator.world import Client, FamilyRun

NO_REFERRER = "-"


@dataclass(frozen=True)
class Navigation:
    """Page-kind transitions from `simulate.navigation`."""

    landing: Settings
    next: Settings
    same_category_prob: float

    def landing_page(self, site: Site, source: str, rng: np.random.Generator) -> Page:
        """Draw the first page of a visit that arrived from referrer kind `source` (search, social, direct)."""
        return site.pick(self.landing.choose(source, rng), rng)

    def next_page(self, site: Site, page: Page, rng: np.random.Generator) -> Page:
        """Draw the page a visitor opens after `page`, preferring products of the same category."""
        kind = self.next.choose(page.kind, rng)
        if kind == "product":
            return site.pick_product(rng, page.category, self.same_category_prob)
        return site.pick(kind, rng)


def build_navigation(cfg: Settings) -> Navigation:
    """Build and validate the navigation model of `simulate.navigation`."""
    navigation = Navigation(cfg.section("landing"), cfg.section("next"), cfg.prob("same_category_prob"))
    for section in (navigation.landing, navigation.next):
        for key in section.keys():
            section.weights(key)
    return navigation


@dataclass(frozen=True)
class AssetPolicy:
    """Asset loading of a browser: chances per asset and the delay between asset requests."""

    load_prob: float
    favicon_prob: float
    revalidate_prob: float
    gap_s: Callable[[], float]


@dataclass
class Visit:
    """One browser visit: the client, its clock, and the assets it cached."""

    run: FamilyRun
    client: Client
    assets: AssetPolicy
    ts: float
    # Assets stored in the browser cache across visits; a returning visit may revalidate them (304).
    stored: set[str]
    # Assets this visit already handled, so later pages skip them.
    seen: set[str] = field(default_factory=set)

    def emit(self, method: str, path: str, status: int, size: int | None, referrer: str = NO_REFERRER) -> None:
        """Record a request at the visit's current time."""
        self.run.emit(self.client, self.ts, method, path, status, size, referrer)


def view_page(visit: Visit, page: Page, referrer: str) -> None:
    """Request `page` and the assets it needs that are not cached; advance the visit clock past them."""
    site, rng = visit.run.site, visit.run.rng
    visit.emit("GET", page.path, 200, page.size, referrer)
    page_url = site.url(page.path)

    favicon = site.path("favicon")
    if favicon not in visit.seen:
        visit.seen.add(favicon)
        if favicon not in visit.stored and rng.random() < visit.assets.favicon_prob:
            visit.ts += visit.assets.gap_s()
            visit.emit("GET", favicon, 200, site.asset_sizes[favicon])
            visit.stored.add(favicon)

    for asset in site.page_assets(page):
        if asset in visit.seen:
            continue
        visit.seen.add(asset)
        if asset in visit.stored:
            if rng.random() < visit.assets.revalidate_prob:
                visit.ts += visit.assets.gap_s()
                visit.emit("GET", asset, 304, None, page_url)
        elif rng.random() < visit.assets.load_prob:
            visit.ts += visit.assets.gap_s()
            visit.emit("GET", asset, 200, site.asset_sizes[asset], page_url)
            visit.stored.add(asset)


def click_affiliate(visit: Visit, page: Page) -> None:
    """Follow one affiliate link of a product page; the site redirects (302) to the merchant."""
    run = visit.run
    link = page.affiliate_links[int(run.rng.integers(len(page.affiliate_links)))]
    visit.emit("GET", link, 302, run.site.draw_size("redirect", run.rng), run.site.url(page.path))
