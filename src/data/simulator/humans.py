"""Human visitors: desktop, mobile, and many people behind one shared NAT address.

A person makes one or more visits. A visit lands on a page from a search engine, a social
site or directly, then follows internal links with think times (log-normal by default). The browser loads
most assets of the first page and only uncached ones later; a returning visit revalidates
some cached assets (304). People sometimes click an affiliate link, log in or send the
contact form, and now and then follow a stale link (404). They never follow honeypot links.
"""

from __future__ import annotations

from src.data.simulator.browsing import AssetPolicy, Visit, click_affiliate, view_page
from src.data.simulator.settings import Settings
from src.data.simulator.site import Page
from src.data.simulator.world import Client, FamilyRun

# A person who fails to log in tries again, at most this many times in all.
MAX_LOGIN_ATTEMPTS = 3


def simulate_humans(run: FamilyRun) -> None:
    """Simulate `count` people of a human family (desktop or mobile), each with its own address."""
    for _ in range(run.count):
        client = run.new_client()
        simulate_person(run, client, run.settings)


def simulate_human_nat(run: FamilyRun) -> None:
    """Simulate `count` shared IPv4 addresses, each used by several people with distinct user agents.

    Each person behaves like the human family that `profiles` maps its user-agent pool to.
    """
    profiles = run.settings.section("profiles")
    for _ in range(run.count):
        ip = run.world.addresses.draw_ipv4()
        people = max(1, run.settings.dist("people_per_address").draw_int(run.rng))
        for pool_name, user_agent in _distinct_user_agents(run, people):
            profile_name = str(profiles.raw(pool_name))
            if profile_name not in run.world.family_settings:
                raise ValueError(f"invalid {profiles.where}.{pool_name}={profile_name!r}: not a human family")
            profile = run.world.family_settings[profile_name]
            client = run.new_client(ip=ip, user_agent=user_agent, protocol=profile.choose("protocols", run.rng))
            simulate_person(run, client, profile)


def _distinct_user_agents(run: FamilyRun, people: int) -> list[tuple[str, str]]:
    """Draw `people` distinct (pool, user agent) pairs, weighting pools by the family's `user_agents`."""
    weights = run.settings.weights("user_agents")
    candidates: list[tuple[str, str]] = []
    probabilities: list[float] = []
    for pool_name, weight in weights.items():
        pool = run.world.user_agents.pool(pool_name, f"{run.settings.where}.user_agents")
        candidates.extend((pool_name, user_agent) for user_agent in pool)
        probabilities.extend([weight / len(pool)] * len(pool))

    usable = sum(1 for p in probabilities if p > 0)
    if people > usable:
        raise ValueError(
            f"{run.settings.where}: {people} people share one address but the pools offer only {usable} "
            "distinct user agents; add user agents or lower people_per_address.max"
        )
    total = sum(probabilities)
    chosen = run.rng.choice(len(candidates), size=people, replace=False, p=[p / total for p in probabilities])
    return [candidates[int(index)] for index in chosen]


def simulate_person(run: FamilyRun, client: Client, profile: Settings) -> None:
    """Simulate all visits of one person whose behaviour follows `profile` (a human family's settings)."""
    rng = run.rng
    stored: set[str] = set()
    ts = run.clock.diurnal_start(rng)
    assets = AssetPolicy(
        load_prob=profile.prob("asset_load_prob"),
        favicon_prob=profile.prob("favicon_prob"),
        revalidate_prob=profile.prob("revalidate_prob"),
        gap_s=lambda: profile.dist("asset_gap_s").draw(rng),
    )

    # Each visit starts with nothing seen but keeps the browser cache of earlier visits.
    for _ in range(max(1, profile.dist("visits").draw_int(rng))):
        if run.clock.is_over(ts):
            break
        visit = Visit(run=run, client=client, assets=assets, ts=ts, stored=stored)
        _human_visit(visit, profile)
        run.visits += 1
        ts = visit.ts + profile.dist("return_gap_s").draw(rng)


def _human_visit(visit: Visit, profile: Settings) -> None:
    """Simulate one visit: landing page, internal navigation and optional side trips."""
    run, site, rng = visit.run, visit.run.site, visit.run.rng
    navigation = run.world.navigation
    source = profile.choose("landing_referrer", rng)
    referrer = "-" if source == "direct" else run.world.referrer(source, rng)
    page = navigation.landing_page(site, source, rng)
    wants_login = rng.random() < profile.prob("login_prob")
    wants_contact = rng.random() < profile.prob("contact_prob")

    for number in range(max(1, profile.dist("pages_per_visit").draw_int(rng))):
        view_page(visit, page, referrer)
        _think(visit, profile)
        if page.kind == "product" and page.affiliate_links and rng.random() < profile.prob("affiliate_click_prob"):
            click_affiliate(visit, page)
            if rng.random() < profile.prob("leave_after_affiliate_prob"):
                return
            _think(visit, profile)
        if number == 0 and wants_login:
            _log_in(visit, profile, page)
        if rng.random() < profile.prob("broken_link_prob"):
            visit.emit("GET", site.missing_path(rng), 404, site.draw_size("not_found", rng), site.url(page.path))
            _think(visit, profile)
        referrer = site.url(page.path)
        page = navigation.next_page(site, page, rng)

    if wants_contact:
        _send_contact_form(visit, profile, referrer)


def _think(visit: Visit, profile: Settings) -> None:
    """Advance the visit clock by one think time."""
    visit.ts += profile.dist("think_time_s").draw(visit.run.rng)


def _log_in(visit: Visit, profile: Settings, page: Page) -> None:
    """Open the login page, post the form until it succeeds (302) or the attempts run out, then open the account."""
    site, rng = visit.run.site, visit.run.rng
    login = site.path("login")
    login_url = site.url(login)
    visit.emit("GET", login, 200, site.size("login"), site.url(page.path))

    for _ in range(MAX_LOGIN_ATTEMPTS):
        visit.ts += profile.dist("form_fill_s").draw(rng)
        if rng.random() >= profile.prob("login_failure_prob"):
            visit.emit("POST", login, 302, site.draw_size("redirect", rng), login_url)
            visit.ts += visit.assets.gap_s()
            visit.emit("GET", site.path("account"), 200, site.size("account"), login_url)
            break
        visit.emit("POST", login, 200, site.size("login"), login_url)
    _think(visit, profile)


def _send_contact_form(visit: Visit, profile: Settings, referrer: str) -> None:
    """Open the contact form, fill it in and post it; the site redirects to a thank-you page."""
    site, rng = visit.run.site, visit.run.rng
    contact = site.path("contact")
    contact_url = site.url(contact)
    visit.emit("GET", contact, 200, site.size("contact"), referrer)
    visit.ts += profile.dist("form_fill_s").draw(rng)
    visit.emit("POST", contact, 302, site.draw_size("redirect", rng), contact_url)
    visit.ts += visit.assets.gap_s()
    visit.emit("GET", site.path("contact_sent"), 200, site.size("contact_sent"), contact_url)
