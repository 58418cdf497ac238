"""Automated page walkers: declared crawlers, content scrapers with browser user agents, headless browsers.

- Declared crawlers send crawler or HTTP-library user agents, fetch robots.txt first, request
  pages only (no assets, no referrer) at a steady rate, and now and then a slash-less URL that
  the site redirects (301). Some ignore robots.txt: they skip it and may follow honeypot and
  affiliate links.
- Content scrapers send browser user agents but walk pages fast without assets, with no
  referrer or a faked one, and follow hidden honeypot links.
- Headless browsers load pages with all their assets and follow internal links like a person,
  but with machine-regular timing.
"""

from __future__ import annotations

from typing import Iterator

from src.data.simulator.browsing import AssetPolicy, Visit, click_affiliate, view_page
from src.data.simulator.distributions import Distribution
from src.data.simulator.site import Page, Site
from src.data.simulator.world import Client, FamilyRun

NO_REFERRER = "-"


def simulate_declared_crawlers(run: FamilyRun) -> None:
    """Simulate `count` declared crawlers, each making `crawls` crawls of the catalogue."""
    settings, rng = run.settings, run.rng
    for _ in range(run.count):
        client = run.new_client()
        obeys_robots = rng.random() >= settings.prob("ignore_robots_prob")
        ts = run.clock.uniform_start(rng)
        for _ in range(max(1, settings.dist("crawls").draw_int(rng))):
            if run.clock.is_over(ts):
                break
            ts = _crawl(run, client, ts, obeys_robots)
            run.visits += 1
            ts += settings.dist("crawl_gap_s").draw(rng)


def _crawl(run: FamilyRun, client: Client, ts: float, obeys_robots: bool) -> float:
    """Simulate one crawl starting at `ts`; return the time after its last request."""
    settings, rng, site = run.settings, run.rng, run.site
    interval = settings.dist("interval_s")
    if obeys_robots:
        run.emit(client, ts, "GET", site.path("robots"), 200, site.size("robots"))
        ts += interval.draw(rng)

    pages = _walk_order(site, run, settings.dist("pages_per_crawl").draw_int(rng))
    for page in pages:
        if obeys_robots and site.is_disallowed(page.path):
            continue
        if page.path.endswith("/") and page.path != "/" and rng.random() < settings.prob("legacy_url_prob"):
            run.emit(client, ts, "GET", page.path.rstrip("/"), 301, site.draw_size("redirect", rng))
            ts += interval.draw(rng)
        run.emit(client, ts, "GET", page.path, 200, page.size)
        ts += interval.draw(rng)
        if not obeys_robots:
            ts = _follow_hidden_links(run, client, page, ts, interval, NO_REFERRER)
        if rng.random() < settings.prob("feed_prob"):
            run.emit(client, ts, "GET", site.path("feed"), 200, site.size("feed"))
            ts += interval.draw(rng)
    return ts


def simulate_content_scrapers(run: FamilyRun) -> None:
    """Simulate `count` scrapers that walk pages fast, without assets, with no or a faked referrer."""
    settings, rng, site = run.settings, run.rng, run.site
    interval = settings.dist("interval_s")
    for _ in range(run.count):
        client = run.new_client()
        referrer_kind = settings.choose("referrer", rng)
        ts = run.clock.uniform_start(rng)
        for _ in range(max(1, settings.dist("visits").draw_int(rng))):
            if run.clock.is_over(ts):
                break
            for page in _walk_order(site, run, settings.dist("pages_per_visit").draw_int(rng)):
                referrer = _scraper_referrer(run, referrer_kind)
                run.emit(client, ts, "GET", page.path, 200, page.size, referrer)
                ts += interval.draw(rng)
                ts = _follow_hidden_links(run, client, page, ts, interval, referrer)
            run.visits += 1
            ts += settings.dist("visit_gap_s").draw(rng)


def _scraper_referrer(run: FamilyRun, kind: str) -> str:
    """Return a scraper's referrer of `kind`: none, a search engine, or the site's home page."""
    if kind == "none":
        return NO_REFERRER
    if kind == "home":
        return run.site.url(run.site.home.path)
    return run.world.referrer(kind, run.rng)


def _follow_hidden_links(
    run: FamilyRun, client: Client, page: Page, ts: float, interval: Distribution, referrer: str
) -> float:
    """Maybe request the page's honeypot link and one affiliate link; return the advanced time."""
    settings, rng, site = run.settings, run.rng, run.site
    if rng.random() < settings.prob("trap_follow_prob"):
        run.emit(client, ts, "GET", page.trap, 200, site.size("trap"), referrer)
        ts += interval.draw(rng)
    if page.affiliate_links and rng.random() < settings.prob("affiliate_follow_prob"):
        link = page.affiliate_links[int(rng.integers(len(page.affiliate_links)))]
        run.emit(client, ts, "GET", link, 302, site.draw_size("redirect", rng), referrer)
        ts += interval.draw(rng)
    return ts


def _walk_order(site: Site, run: FamilyRun, count: int) -> Iterator[Page]:
    """Yield up to `count` distinct content pages: the home page first, the rest in random order."""
    others = [page for page in site.pages if page is not site.home]
    order = run.rng.permutation(len(others))
    yield site.home
    for index in order[: max(0, count - 1)]:
        yield others[int(index)]


def simulate_headless_browsers(run: FamilyRun) -> None:
    """Simulate `count` headless browsers: full page loads with assets on a near-constant cadence."""
    settings, rng = run.settings, run.rng
    step = settings.number("asset_step_s")
    assets = AssetPolicy(load_prob=1.0, favicon_prob=0.0, revalidate_prob=0.0, gap_s=lambda: step)
    for _ in range(run.count):
        client = run.new_client()
        ts = run.clock.uniform_start(rng)
        for _ in range(max(1, settings.dist("visits").draw_int(rng))):
            if run.clock.is_over(ts):
                break
            # Each visit starts with an empty cache, as a freshly launched browser profile does.
            visit = Visit(run=run, client=client, assets=assets, ts=ts, stored=set())
            _headless_visit(visit, step)
            run.visits += 1
            ts = visit.ts + settings.dist("visit_gap_s").draw(rng)


def _headless_visit(visit: Visit, step: float) -> None:
    """Load pages along internal links, starting each page `page_interval_s` after the previous one."""
    run, site, rng = visit.run, visit.run.site, visit.run.rng
    settings, navigation = run.settings, run.world.navigation
    page, referrer = navigation.landing_page(site, "direct", rng), NO_REFERRER

    for _ in range(max(1, settings.dist("pages_per_visit").draw_int(rng))):
        page_start = visit.ts
        view_page(visit, page, referrer)
        if page.affiliate_links and rng.random() < settings.prob("affiliate_click_prob"):
            visit.ts += step
            click_affiliate(visit, page)
        visit.ts = max(visit.ts, page_start + settings.dist("page_interval_s").draw(rng))
        referrer = site.url(page.path)
        page = navigation.next_page(site, page, rng)
