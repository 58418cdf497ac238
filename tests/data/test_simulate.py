"""Tests for the traffic simulator: determinism, log format, ground truth and behaviour per family."""

from __future__ import annotations

import csv
import importlib.util
import ipaddress
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from omegaconf import DictConfig
from typer.testing import CliRunner

from src.config import compose_config, write_params
from src.data.simulate import FAMILIES, SimulationSummary, app, simulate
from src.data.simulator.addresses import AddressPool
from src.data.simulator.distributions import parse_distribution
from src.data.simulator.settings import Settings
from src.data.simulator.world import Client, ClientRegistry

# Apache combined format as the simulator writes it: no escapes inside quoted fields.
COMBINED_RE = re.compile(
    r"^(?P<ip>\S+) - - \[(?P<time>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] "
    r'"(?P<method>[A-Z]+) (?P<path>/\S*) (?P<protocol>HTTP/(?:1\.0|1\.1|2\.0))" '
    r'(?P<status>\d{3}) (?P<size>\d+|-) "(?P<referrer>[^"]*)" "(?P<user_agent>[^"]+)"$'
)
TIME_FORMAT = "%d/%b/%Y:%H:%M:%S %z"
IPV4_DOCUMENTATION = ipaddress.ip_network("198.18.0.0/15")
IPV6_DOCUMENTATION = ipaddress.ip_network("2001:db8::/32")
HUMAN_FAMILIES = ("human_desktop", "human_mobile", "human_nat")
EXPECTED_POLICY = {
    "human_desktop": ("0", "0"),
    "human_mobile": ("0", "0"),
    "human_nat": ("0", "0"),
    "declared_crawler": ("1", "1"),
    "content_scraper": ("1", "1"),
    "click_fraud": ("1", "1"),
    "form_spam": ("1", "1"),
    "credential_stuffing": ("1", "1"),
    "vuln_scanner": ("1", "1"),
    "headless_browser": ("1", "1"),
    "feed_reader": ("0", "1"),
    "uptime_monitor": ("0", "1"),
}


@dataclass(frozen=True)
class LogLine:
    """One parsed line of the simulated access log."""

    ip: str
    ts: datetime
    method: str
    path: str
    protocol: str
    status: int
    size: str
    referrer: str
    user_agent: str


@dataclass
class SimulatedRun:
    """A simulator run read back: summary, parsed lines, raw text and ground truth by client."""

    summary: SimulationSummary
    lines: list[LogLine]
    text: list[str]
    truth: dict[tuple[str, str], dict[str, str]]
    truth_rows: list[dict[str, str]]

    def family_clients(self, family: str) -> dict[tuple[str, str], list[LogLine]]:
        """Return the requests of every client of `family`, in log order."""
        clients: dict[tuple[str, str], list[LogLine]] = defaultdict(list)
        for line in self.lines:
            key = (line.ip, line.user_agent)
            if self.truth[key]["family"] == family:
                clients[key].append(line)
        return clients


def read_run(summary: SimulationSummary) -> SimulatedRun:
    """Parse the log with COMBINED_RE (failing on the first bad line) and read the ground truth."""
    text = summary.log_path.read_text(encoding="utf-8").splitlines()
    lines = []
    for number, raw in enumerate(text, start=1):
        match = COMBINED_RE.match(raw)
        assert match is not None, f"line {number} is not combined format: {raw!r}"
        fields = match.groupdict()
        lines.append(
            LogLine(
                ip=fields["ip"],
                ts=datetime.strptime(fields["time"], TIME_FORMAT),
                method=fields["method"],
                path=fields["path"],
                protocol=fields["protocol"],
                status=int(fields["status"]),
                size=fields["size"],
                referrer=fields["referrer"],
                user_agent=fields["user_agent"],
            )
        )
    with summary.ground_truth_path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    truth = {(row["ip"], row["user_agent"]): row for row in rows}
    return SimulatedRun(summary, lines, text, truth, rows)


def is_asset(path: str, cfg: DictConfig) -> bool:
    """Return whether `path` is an asset by the patterns of conf/data."""
    return any(re.search(pattern, path, re.IGNORECASE) for pattern in cfg.data.preprocess.asset_patterns)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory, cfg: DictConfig) -> SimulatedRun:
    """One run of the default configuration, shared by the read-only tests."""
    summary = simulate(cfg, tmp_path_factory.mktemp("simulated"))
    return read_run(summary)


# Determinism and size


def test_same_seed_gives_identical_bytes(tmp_path: Path, cfg: DictConfig) -> None:
    first = simulate(cfg, tmp_path / "a", seed=11, scale=0.2)
    second = simulate(cfg, tmp_path / "b", seed=11, scale=0.2)

    assert first.log_path.read_bytes() == second.log_path.read_bytes()
    assert first.ground_truth_path.read_bytes() == second.ground_truth_path.read_bytes()
    assert first.families == second.families


def test_different_seed_changes_output(tmp_path: Path, cfg: DictConfig) -> None:
    first = simulate(cfg, tmp_path / "a", seed=11, scale=0.2)
    second = simulate(cfg, tmp_path / "b", seed=12, scale=0.2)

    assert first.log_path.read_bytes() != second.log_path.read_bytes()
    assert first.ground_truth_path.read_bytes() != second.ground_truth_path.read_bytes()


def test_config_seed_used_by_default(default_run: SimulatedRun, cfg: DictConfig) -> None:
    assert default_run.summary.seed == cfg.simulate.seed


def test_default_run_size(default_run: SimulatedRun) -> None:
    summary = default_run.summary
    visits = sum(counts.visits for counts in summary.families.values() if counts.requests)

    assert 20_000 <= summary.lines <= 60_000
    assert summary.lines == len(default_run.text)
    assert sum(counts.requests for counts in summary.families.values()) == summary.lines
    assert visits >= 2_000
    assert list(summary.families) == list(FAMILIES)


def test_summary_counts_match_ground_truth(default_run: SimulatedRun) -> None:
    per_family = Counter(row["family"] for row in default_run.truth_rows)

    for name, counts in default_run.summary.families.items():
        assert counts.clients == per_family[name], name
        assert counts.clients > 0, name


# Format and order


def test_lines_sorted_by_time(default_run: SimulatedRun) -> None:
    times = [line.ts for line in default_run.lines]
    assert all(earlier <= later for earlier, later in zip(times, times[1:]))


def test_timestamps_inside_configured_window(default_run: SimulatedRun, cfg: DictConfig) -> None:
    start = datetime.fromisoformat(cfg.simulate.start)
    first, last = default_run.lines[0].ts, default_run.lines[-1].ts

    assert first >= start
    assert (first - start).total_seconds() < 3600
    # Visits that start before the end may run on for a while after it.
    assert (last - start).total_seconds() < (cfg.simulate.days + 1) * 86400
    assert all(raw.split("]")[0].endswith(" +0000") for raw in default_run.text[:100])


def test_log_parser_reads_every_line(default_run: SimulatedRun) -> None:
    if importlib.util.find_spec("src.data.log_parser") is None:
        pytest.skip("src.data.log_parser is not written yet")
    from src.data.log_parser import LineError, parse_line

    errors: Counter[str] = Counter()
    for raw in default_run.text:
        try:
            parsed = parse_line(raw)
        except LineError as exc:
            errors[exc.reason] += 1
            continue
        assert parsed["source_format"] == "combined"
    assert errors == Counter()


def test_status_and_protocol_mix(default_run: SimulatedRun) -> None:
    statuses = Counter(line.status for line in default_run.lines)
    protocols = Counter(line.protocol for line in default_run.lines)

    assert set(statuses) <= {200, 301, 302, 304, 403, 404}
    for status in (200, 301, 302, 304, 404):
        assert statuses[status] > 0, status
    assert statuses[200] / len(default_run.lines) > 0.7
    assert protocols["HTTP/1.1"] > protocols["HTTP/2.0"] > protocols["HTTP/1.0"] > 0


def test_bodies_match_status_and_method(default_run: SimulatedRun) -> None:
    for line in default_run.lines:
        if line.status == 304 or line.method == "HEAD":
            assert line.size == "-", line
        else:
            assert line.size.isdigit(), line
            assert int(line.size) > 0, line


def test_utc_offset_written(tmp_path: Path) -> None:
    shifted = compose_config(["simulate.utc_offset='+0200'"])
    summary = simulate(shifted, tmp_path, families=["uptime_monitor"], scale=0.2)
    run = read_run(summary)
    start = datetime.fromisoformat(shifted.simulate.start)

    assert all(raw.split("]")[0].endswith(" +0200") for raw in run.text)
    assert run.lines[0].ts >= start
    assert run.lines[0].ts.utcoffset().total_seconds() == 7200


# Ground truth and addresses


def test_ground_truth_covers_every_client(default_run: SimulatedRun) -> None:
    logged = {(line.ip, line.user_agent) for line in default_run.lines}

    assert logged == set(default_run.truth)
    assert len(default_run.truth_rows) == len(default_run.truth)


def test_ground_truth_columns_and_policy(default_run: SimulatedRun) -> None:
    assert list(default_run.truth_rows[0]) == ["ip", "user_agent", "family", "is_bot", "automated"]
    for row in default_run.truth_rows:
        assert (row["is_bot"], row["automated"]) == EXPECTED_POLICY[row["family"]], row["family"]


def test_addresses_in_documentation_ranges(default_run: SimulatedRun) -> None:
    versions = Counter()
    for row in default_run.truth_rows:
        address = ipaddress.ip_address(row["ip"])
        network = IPV4_DOCUMENTATION if address.version == 4 else IPV6_DOCUMENTATION
        assert address in network, row["ip"]
        versions[address.version] += 1

    assert 0.05 < versions[6] / len(default_run.truth_rows) < 0.3


def test_register_rejects_reused_pair() -> None:
    registry = ClientRegistry()
    registry.register(Client("198.18.0.1", "curl/8.5.0", "HTTP/1.1", "declared_crawler"))
    registry.register(Client("198.18.0.1", "Wget/1.21.4", "HTTP/1.1", "declared_crawler"))

    with pytest.raises(ValueError, match="pair reused"):
        registry.register(Client("198.18.0.1", "curl/8.5.0", "HTTP/1.1", "vuln_scanner"))
    assert len(registry.clients) == 2


def small_pool(network: str, ipv6_share: float = 0.0) -> AddressPool:
    """Return an address pool over a small IPv4 network."""
    settings = Settings(
        {"ipv4_network": network, "ipv6_network": "2001:db8::/32", "ipv6_share": ipv6_share, "proxy_prefix_len": 24},
        "simulate.addresses",
    )
    return AddressPool(settings, np.random.default_rng(0))


def test_proxy_bursts_fill_one_block() -> None:
    pool = small_pool("198.18.0.0/22")
    first = pool.draw_proxy_burst(200)
    second = pool.draw_proxy_burst(50)
    third = pool.draw_proxy_burst(10)

    blocks = [{ipaddress.ip_network(f"{ip}/24", strict=False) for ip in burst} for burst in (first, second, third)]
    assert all(len(block) == 1 for block in blocks)
    assert blocks[0] == blocks[1]
    assert blocks[2] != blocks[0]
    assert len(set(first + second + third)) == 260


def test_ordinary_addresses_avoid_proxy_blocks() -> None:
    pool = small_pool("198.18.0.0/23")
    proxy_block = ipaddress.ip_network(f"{pool.draw_proxy_burst(5)[0]}/24", strict=False)
    ordinary = [ipaddress.ip_address(pool.draw_ipv4()) for _ in range(254)]

    assert not any(address in proxy_block for address in ordinary)
    assert len(set(ordinary)) == 254
    with pytest.raises(ValueError, match="used up"):
        pool.draw_ipv4()


def test_used_up_ipv4_falls_back_to_ipv6() -> None:
    pool = small_pool("198.18.0.0/24")
    addresses = [ipaddress.ip_address(pool.draw()) for _ in range(260)]

    assert sum(address.version == 4 for address in addresses) == 254
    assert all(address in IPV6_DOCUMENTATION for address in addresses if address.version == 6)


def test_distribution_clipped_to_bounds() -> None:
    rng = np.random.default_rng(0)
    spec = parse_distribution({"dist": "lognormal", "median": 30, "sigma": 2.0, "min": 5, "max": 60}, "x")
    draws = [spec.draw(rng) for _ in range(2000)]

    assert min(draws) == 5
    assert max(draws) == 60
    assert 20 < statistics.median(draws) < 40


def test_distribution_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="missing"):
        parse_distribution({"dist": "normal", "mean": 1}, "simulate.x")
    with pytest.raises(ValueError, match="at least 1"):
        parse_distribution({"dist": "geometric", "mean": 0.5}, "simulate.x")
    with pytest.raises(ValueError, match="low 5 is greater than high 1"):
        parse_distribution({"dist": "uniform_int", "low": 5, "high": 1}, "simulate.x")


# Site paths against the pipeline's patterns


def test_paths_match_pipeline_patterns(default_run: SimulatedRun, cfg: DictConfig) -> None:
    preprocess = cfg.data.preprocess
    honeypot = [re.compile(pattern) for pattern in cfg.labels.honeypot_patterns]
    affiliate = [re.compile(pattern) for pattern in preprocess.affiliate_patterns]
    feed = [re.compile(pattern) for pattern in preprocess.feed_patterns]

    for line in default_run.lines:
        if line.path.startswith("/go/"):
            assert any(p.search(line.path) for p in affiliate), line.path
            assert line.status == 302, line
        if line.path.startswith("/trap/"):
            assert any(p.search(line.path) for p in honeypot), line.path
        if line.path == "/feed/":
            assert any(p.search(line.path) for p in feed)
        if line.path.startswith(("/static/", "/media/")) or line.path == "/favicon.ico":
            assert is_asset(line.path, cfg), line.path
        if line.path.startswith(("/reviews/", "/category/", "/blog/")) and line.status == 200:
            assert not is_asset(line.path, cfg), line.path
            assert not any(p.search(line.path) for p in feed + affiliate), line.path


# Behaviour per family


def test_humans_load_assets_on_first_page(default_run: SimulatedRun, cfg: DictConfig) -> None:
    with_assets = 0
    clients = [c for family in HUMAN_FAMILIES for c in default_run.family_clients(family).values()]
    for requests in clients:
        assert not is_asset(requests[0].path, cfg), requests[0]
        second_page = next((i for i, r in enumerate(requests[1:], 1) if not is_asset(r.path, cfg)), len(requests))
        with_assets += any(is_asset(r.path, cfg) for r in requests[1:second_page])

    assert with_assets / len(clients) > 0.95


def test_human_cache_limits_later_assets(default_run: SimulatedRun, cfg: DictConfig) -> None:
    first_page_assets: list[int] = []
    later_page_assets: list[int] = []
    for requests in default_run.family_clients("human_desktop").values():
        counts: list[int] = []
        for request in requests:
            if is_asset(request.path, cfg) and counts:
                counts[-1] += 1
            elif request.method == "GET" and request.status == 200:
                counts.append(0)
        first_page_assets.append(counts[0])
        later_page_assets.extend(counts[1:])

    assert statistics.mean(later_page_assets) < statistics.mean(first_page_assets) / 2


def test_humans_never_follow_honeypots(default_run: SimulatedRun) -> None:
    for family in HUMAN_FAMILIES:
        for requests in default_run.family_clients(family).values():
            assert not any(r.path.startswith("/trap/") for r in requests)


def test_human_referrers_search_then_internal(default_run: SimulatedRun, cfg: DictConfig) -> None:
    site_prefix = f"https://{cfg.simulate.site_host}/"
    search = set(cfg.simulate.referrers.search)
    landing_search = later_internal = later_pages = 0
    clients = default_run.family_clients("human_desktop").values()
    for requests in clients:
        landing_search += requests[0].referrer in search
        pages = [r for r in requests[1:] if not is_asset(r.path, cfg)]
        later_pages += len(pages)
        later_internal += sum(r.referrer.startswith(site_prefix) for r in pages)

    assert landing_search / len(clients) > 0.4
    # Later visits of a returning person land from outside again, so not every later page is internal.
    assert later_internal / later_pages > 0.8


def test_nat_address_shared_by_browsers(default_run: SimulatedRun) -> None:
    by_ip: dict[str, set[str]] = defaultdict(set)
    for ip, user_agent in default_run.family_clients("human_nat"):
        by_ip[ip].add(user_agent)

    assert by_ip
    for ip, agents in by_ip.items():
        assert len(agents) >= 3, ip
        assert ipaddress.ip_address(ip).version == 4


def test_scrapers_request_no_assets(default_run: SimulatedRun, cfg: DictConfig) -> None:
    search = set(cfg.simulate.referrers.search)
    home = f"https://{cfg.simulate.site_host}/"
    for requests in default_run.family_clients("content_scraper").values():
        assert not any(is_asset(r.path, cfg) for r in requests)
        assert {r.referrer for r in requests} <= search | {"-", home}
    gaps = [
        (b.ts - a.ts).total_seconds()
        for requests in default_run.family_clients("content_scraper").values()
        for a, b in zip(requests, requests[1:])
    ]
    assert statistics.median(gaps) <= 3


def test_declared_crawlers_fetch_robots_first(default_run: SimulatedRun, cfg: DictConfig) -> None:
    disallowed = tuple(cfg.simulate.site.robots_disallow)
    obeying = ignoring = 0
    for requests in default_run.family_clients("declared_crawler").values():
        assert not any(is_asset(r.path, cfg) for r in requests)
        assert {r.referrer for r in requests} == {"-"}
        if requests[0].path == "/robots.txt":
            obeying += 1
            assert not any(r.path.startswith(disallowed) for r in requests)
        else:
            ignoring += 1
            assert not any(r.path == "/robots.txt" for r in requests)

    assert obeying > ignoring > 0


def test_click_fraud_one_request_per_client(default_run: SimulatedRun) -> None:
    per_block: Counter[str] = Counter()
    for (ip, _), requests in default_run.family_clients("click_fraud").items():
        assert len(requests) == 1
        assert requests[0].path.startswith("/go/")
        assert requests[0].status == 302
        per_block[str(ipaddress.ip_network(f"{ip}/24", strict=False))] += 1

    assert min(per_block.values()) >= 5
    assert len(per_block) < sum(per_block.values()) / 10


def test_click_fraud_fakes_product_referrer(default_run: SimulatedRun, cfg: DictConfig) -> None:
    product_prefix = f"https://{cfg.simulate.site_host}/reviews/"
    clicks = [r[0] for r in default_run.family_clients("click_fraud").values()]
    faked = [click for click in clicks if click.referrer.startswith(product_prefix)]

    assert len(faked) / len(clicks) > 0.7
    for click in faked:
        product = click.path.rstrip("/").split("/")[-1]
        assert click.referrer.rstrip("/").endswith(product)


def test_form_spam_posts_seconds_after_get(default_run: SimulatedRun) -> None:
    posts = 0
    for requests in default_run.family_clients("form_spam").values():
        for previous, request in zip([None, *requests], requests):
            if request.method != "POST":
                continue
            posts += 1
            assert previous is not None
            assert previous.method == "GET"
            assert 0 <= (request.ts - previous.ts).total_seconds() <= 10
            assert request.referrer != "-"
    assert posts > 0


def test_credential_stuffing_posts_to_login(default_run: SimulatedRun, cfg: DictConfig) -> None:
    login = cfg.simulate.site.paths.login
    for requests in default_run.family_clients("credential_stuffing").values():
        assert {r.path for r in requests} == {login}
        assert any(r.method == "POST" for r in requests)
    methods = Counter(
        r.method for requests in default_run.family_clients("credential_stuffing").values() for r in requests
    )
    assert methods["POST"] / sum(methods.values()) >= 0.9


def test_scanners_get_mostly_not_found(default_run: SimulatedRun) -> None:
    statuses = Counter(
        r.status for requests in default_run.family_clients("vuln_scanner").values() for r in requests
    )
    total = sum(statuses.values())

    assert statuses[404] / total > 0.75
    assert (statuses[404] + statuses[403] + statuses[200]) == total


def test_headless_browsers_keep_regular_timing(default_run: SimulatedRun, cfg: DictConfig) -> None:
    visit_gap_s = 600
    for requests in default_run.family_clients("headless_browser").values():
        assert any(is_asset(r.path, cfg) for r in requests)
        pages = [r for r in requests if not is_asset(r.path, cfg) and not r.path.startswith("/go/")]
        gaps = [(b.ts - a.ts).total_seconds() for a, b in zip(pages, pages[1:])]
        in_visit = [gap for gap in gaps if gap < visit_gap_s]
        if len(in_visit) >= 3:
            # Whole-second timestamps add up to one second of noise around the 5-second interval.
            assert max(in_visit) - min(in_visit) <= 2, in_visit


def test_feed_readers_poll_feed(default_run: SimulatedRun) -> None:
    for requests in default_run.family_clients("feed_reader").values():
        assert {(r.method, r.path) for r in requests} == {("GET", "/feed/")}
        assert {r.status for r in requests} <= {200, 304}
        assert requests[0].status == 200
        gaps = [(b.ts - a.ts).total_seconds() for a, b in zip(requests, requests[1:])]
        assert max(gaps) - min(gaps) <= 30


def test_uptime_monitors_check_home(default_run: SimulatedRun) -> None:
    methods = set()
    for requests in default_run.family_clients("uptime_monitor").values():
        client_methods = {r.method for r in requests}
        assert len(client_methods) == 1
        assert {r.path for r in requests} == {"/"}
        methods |= client_methods
    assert methods <= {"HEAD", "GET"}


# Family selection, scale and CLI


def test_selected_families_only(tmp_path: Path, cfg: DictConfig) -> None:
    summary = simulate(cfg, tmp_path, families=["click_fraud", "feed_reader"], scale=0.2)
    run = read_run(summary)

    assert {row["family"] for row in run.truth_rows} == {"click_fraud", "feed_reader"}
    assert list(summary.families) == ["click_fraud", "feed_reader"]


def test_unknown_family_rejected(tmp_path: Path, cfg: DictConfig) -> None:
    with pytest.raises(ValueError, match="unknown families"):
        simulate(cfg, tmp_path, families=["human_desktop", "martians"])


def test_family_behaviour_independent_of_selection(tmp_path: Path, cfg: DictConfig) -> None:
    alone = read_run(simulate(cfg, tmp_path / "alone", families=["feed_reader"], scale=0.2))
    mixed = read_run(simulate(cfg, tmp_path / "mixed", scale=0.2))

    def feed_requests(run: SimulatedRun) -> list[tuple[datetime, str, int, str]]:
        return [
            (r.ts, r.path, r.status, r.user_agent)
            for requests in run.family_clients("feed_reader").values()
            for r in requests
        ]

    assert sorted(feed_requests(alone)) == sorted(feed_requests(mixed))


def test_scale_multiplies_counts(tmp_path: Path, cfg: DictConfig) -> None:
    summary = simulate(cfg, tmp_path, scale=0.1)

    assert summary.families["human_desktop"].clients == round(cfg.simulate.families.human_desktop.count * 0.1)
    assert summary.families["uptime_monitor"].clients == 1
    assert summary.families["click_fraud"].visits == round(cfg.simulate.families.click_fraud.count * 0.1)


def test_config_scale_used_by_default(tmp_path: Path) -> None:
    small = compose_config(["simulate.scale=0.1"])
    from_config = simulate(small, tmp_path / "config", families=["human_desktop"])
    explicit = simulate(small, tmp_path / "explicit", families=["human_desktop"], scale=0.2)

    assert from_config.scale == 0.1
    assert from_config.families["human_desktop"].clients == round(small.simulate.families.human_desktop.count * 0.1)
    assert explicit.families["human_desktop"].clients == round(small.simulate.families.human_desktop.count * 0.2)


def test_invalid_scale_rejected(tmp_path: Path, cfg: DictConfig) -> None:
    with pytest.raises(ValueError, match="invalid scale"):
        simulate(cfg, tmp_path, scale=0)


def test_invalid_distribution_names_key(tmp_path: Path) -> None:
    broken = compose_config(["simulate.families.human_desktop.think_time_s.dist=weibull"])

    with pytest.raises(ValueError, match="simulate.families.human_desktop.think_time_s"):
        simulate(broken, tmp_path)


def test_user_agent_with_quote_rejected(tmp_path: Path) -> None:
    broken = compose_config(["simulate.user_agents.library=['bad\"agent']"])

    with pytest.raises(ValueError, match="double quotes"):
        simulate(broken, tmp_path)


def test_cli_writes_log_and_truth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Without a params.yaml in the working directory the CLI composes conf/.
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, [str(tmp_path / "out"), "--scale", "0.05", "--seed", "3", "--family", "form_spam"])

    assert result.exit_code == 0, result.output
    rows = read_run_files(tmp_path / "out")
    assert rows
    assert {row["family"] for row in rows} == {"form_spam"}


def test_cli_reads_params_file(tmp_path: Path, params_file: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [str(out), "--params", str(params_file), "--scale", "0.05"])

    assert result.exit_code == 0, result.output
    assert (out / "access.log").stat().st_size > 0
    assert len(read_run_files(out)) > len(FAMILIES)


def read_run_files(out_dir: Path) -> list[dict[str, str]]:
    """Return the ground-truth rows written into `out_dir`."""
    with (out_dir / "ground_truth.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_cli_prefers_local_params_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_params(compose_config(["simulate.scale=0.05", "simulate.seed=5"]), tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["out"])

    assert result.exit_code == 0, result.output
    expected = simulate(compose_config(), tmp_path / "expected", seed=5, scale=0.05)
    assert (tmp_path / "out" / "access.log").read_bytes() == expected.log_path.read_bytes()


def test_stale_config_names_missing_key(tmp_path: Path) -> None:
    stale = compose_config()
    del stale.simulate.utc_offset

    with pytest.raises(ValueError, match="missing config key simulate.utc_offset"):
        simulate(stale, tmp_path)
