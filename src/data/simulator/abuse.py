"""Fraud and abuse families: click fraud, form spam, credential stuffing and vulnerability scanners.

- Click fraud: bursts of affiliate clicks (`/go/...`, 302) through a residential proxy pool.
  Every request of a burst comes from a new address inside one /24 with its own browser user
  agent, so each client makes exactly one request. The referrer fakes the product page.
- Form spam: fetch a form (contact or blog comment), post it seconds later with a faked referrer.
- Credential stuffing: repeated POSTs to the login path, mostly failing (200), rarely 302.
- Vulnerability scanners: bursts of requests for admin and config paths that the site does
  not have (404, or 403 for protected files).
"""

from __future__ import annotations

import re

import numpy as np

from src.data.simulator.world import FamilyRun

NO_REFERRER = "-"


def simulate_click_fraud(run: FamilyRun) -> None:
    """Simulate `count` bursts of affiliate clicks, one client (proxy address + user agent) per click."""
    settings, rng, site = run.settings, run.rng, run.site
    products = [page for page in site.by_kind["product"] if page.affiliate_links]
    if not products:
        raise ValueError("simulate.site has no product page with affiliate links; click_fraud needs one")

    for _ in range(run.count):
        size = max(1, settings.dist("burst_size").draw_int(rng))
        product_count = max(1, settings.dist("products_per_burst").draw_int(rng))
        targets = [products[int(i)] for i in rng.choice(len(products), size=min(product_count, len(products)), replace=False)]
        ts = run.clock.uniform_start(rng)

        for ip in run.world.addresses.draw_proxy_burst(size):
            client = run.new_client(ip=ip)
            page = targets[int(rng.integers(len(targets)))]
            link = page.affiliate_links[int(rng.integers(len(page.affiliate_links)))]
            kind = settings.choose("referrer", rng)
            referrer = site.url(page.path) if kind == "product" else run.world.referrer(kind, rng)
            run.emit(client, ts, "GET", link, 302, site.draw_size("redirect", rng), referrer)
            ts += settings.dist("gap_s").draw(rng)
        run.visits += 1


def simulate_form_spam(run: FamilyRun) -> None:
    """Simulate `count` spam bots that fetch a form and post it seconds later with a faked referrer."""
    settings, rng, site = run.settings, run.rng, run.site
    posts_between = settings.dist("between_posts_s")
    for _ in range(run.count):
        client = run.new_client()
        ts = run.clock.uniform_start(rng)
        for _ in range(max(1, settings.dist("visits").draw_int(rng))):
            if run.clock.is_over(ts):
                break
            for _ in range(max(1, settings.dist("posts_per_visit").draw_int(rng))):
                form_path, post_path, form_size = _pick_form(run)
                run.emit(client, ts, "GET", form_path, 200, form_size)
                ts += settings.dist("fill_delay_s").draw(rng)
                kind = settings.choose("referrer", rng)
                referrer = site.url(form_path) if kind == "form" else run.world.referrer(kind, rng)
                run.emit(client, ts, "POST", post_path, 302, site.draw_size("redirect", rng), referrer)
                ts += posts_between.draw(rng)
            run.visits += 1
            ts += settings.dist("visit_gap_s").draw(rng)


def _pick_form(run: FamilyRun) -> tuple[str, str, int]:
    """Draw a form to spam; return the page holding it, the path it posts to, and the page size."""
    site, rng = run.site, run.rng
    posts = [page for page in site.by_kind["blog"] if page.comment_path]
    if run.settings.choose("forms", rng) == "comment" and posts:
        page = posts[int(rng.integers(len(posts)))]
        return page.path, page.comment_path, page.size
    contact = site.path("contact")
    return contact, contact, site.size("contact")


def simulate_credential_stuffing(run: FamilyRun) -> None:
    """Simulate `count` clients that post login attempts at a fast, fairly regular pace."""
    settings, rng, site = run.settings, run.rng, run.site
    login = site.path("login")
    interval = settings.dist("interval_s")
    for _ in range(run.count):
        client = run.new_client()
        referrer = site.url(login) if settings.choose("referrer", rng) == "login" else NO_REFERRER
        ts = run.clock.uniform_start(rng)
        for _ in range(max(1, settings.dist("visits").draw_int(rng))):
            if run.clock.is_over(ts):
                break
            if rng.random() < settings.prob("fetch_form_prob"):
                run.emit(client, ts, "GET", login, 200, site.size("login"))
                ts += interval.draw(rng)
            for _ in range(max(1, settings.dist("attempts_per_visit").draw_int(rng))):
                if rng.random() < settings.prob("success_prob"):
                    run.emit(client, ts, "POST", login, 302, site.draw_size("redirect", rng), referrer)
                else:
                    run.emit(client, ts, "POST", login, 200, site.size("login"), referrer)
                ts += interval.draw(rng)
            run.visits += 1
            ts += settings.dist("visit_gap_s").draw(rng)


def simulate_vulnerability_scanners(run: FamilyRun) -> None:
    """Simulate `count` scanners probing admin and config paths in fast bursts (mostly 404)."""
    settings, rng, site = run.settings, run.rng, run.site
    probe_paths = [str(path) for path in settings.raw("probe_paths")]
    if not probe_paths:
        raise ValueError(f"{settings.where}.probe_paths is empty; list the paths scanners request")
    forbidden = [re.compile(pattern) for pattern in settings.raw("forbidden_patterns")]
    interval = settings.dist("interval_s")

    for _ in range(run.count):
        client = run.new_client()
        ts = run.clock.uniform_start(rng)
        for _ in range(max(1, settings.dist("visits").draw_int(rng))):
            if run.clock.is_over(ts):
                break
            if rng.random() < settings.prob("home_first_prob"):
                run.emit(client, ts, "GET", site.home.path, 200, site.home.size)
                ts += interval.draw(rng)
            count = max(1, settings.dist("probes_per_visit").draw_int(rng))
            # Scanners work through their list once before repeating any path.
            for index in np.resize(rng.permutation(len(probe_paths)), count):
                path = probe_paths[int(index)]
                is_forbidden = any(pattern.search(path) for pattern in forbidden)
                status = 403 if is_forbidden else 404
                size = site.draw_size("forbidden" if is_forbidden else "not_found", rng)
                run.emit(client, ts, settings.choose("methods", rng), path, status, size)
                ts += interval.draw(rng)
            run.visits += 1
            ts += settings.dist("visit_gap_s").draw(rng)
