"""Traffic simulator: synthetic access logs of an affiliate site with per-client ground truth.

It is the default input of a fresh clone and the ground truth for evaluation. A run writes

- `<out_dir>/access.log`: Apache combined-format lines sorted by time, and
- `<out_dir>/ground_truth.csv`: columns `ip,user_agent,family,is_bot,automated`, one row per
  client. A client is one (ip, user agent) pair, and no pair is used by two clients.

Families (conf/simulate/default.yaml documents their counts, timing and behaviour):

| family | is_bot | automated |
|---|---|---|
| human_desktop, human_mobile, human_nat | 0 | 0 |
| declared_crawler, content_scraper, click_fraud, form_spam, credential_stuffing, vuln_scanner, headless_browser | 1 | 1 |
| feed_reader, uptime_monitor | 0 | 1 |

Label policy: declared crawlers (search engines, SEO crawlers, HTTP libraries such as
python-requests and curl) count as bots, because their affiliate clicks must not be paid as
human clicks. Feed readers and uptime monitors are benign automation, not fraud: they get
is_bot=0 and automated=1.

Client addresses come only from 198.18.0.0/15 (RFC 2544 benchmarking) and 2001:db8::/32
(RFC 3849 documentation), so no real person's address appears. The same config, seed, scale
and family selection give byte-identical files.

    python -m src.data.simulate OUT_DIR [--params params.yaml] [--seed N] [--scale FLOAT] [--family NAME ...]

Without --params the CLI reads ./params.yaml when it exists (as in a DVC stage) and
otherwise composes conf/ with Hydra.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import typer
from omegaconf import DictConfig

from src.config import PARAMS_FILE, compose_config, load_params
from src.data.simulator.engine import FAMILIES, FAMILY_POLICY, FamilyCounts, run_simulation
from src.data.simulator.settings import Settings
from src.data.simulator.world import parse_utc_offset
from src.data.simulator.writer import write_access_log, write_ground_truth

logger = logging.getLogger(__name__)

__all__ = ["FAMILIES", "FAMILY_POLICY", "FamilyCounts", "SimulationSummary", "select_families", "simulate"]


@dataclass(frozen=True)
class SimulationSummary:
    """Outcome of one run: output paths, seed, scale, lines written and counts per family."""

    log_path: Path
    ground_truth_path: Path
    seed: int
    scale: float
    lines: int
    families: dict[str, FamilyCounts] = field(default_factory=dict)

    @property
    def clients(self) -> int:
        return sum(counts.clients for counts in self.families.values())

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as JSON-ready values."""
        return {
            "log_path": str(self.log_path),
            "ground_truth_path": str(self.ground_truth_path),
            "seed": self.seed,
            "scale": self.scale,
            "lines": self.lines,
            "clients": self.clients,
            "families": {name: vars(counts) for name, counts in self.families.items()},
        }


def simulate(
    cfg: DictConfig,
    out_dir: Path,
    seed: int | None = None,
    families: Sequence[str] | None = None,
    scale: float | None = None,
) -> SimulationSummary:
    """Simulate traffic and write the access log and ground truth into `out_dir`.

    `cfg` is the composed root config (its `simulate` section is used) or the `simulate`
    section itself. `seed` overrides `simulate.seed` and `scale` overrides `simulate.scale`,
    the factor applied to every family count. `families` limits the run to those families
    (all when None). Raises ValueError for an invalid seed, scale, family name or config value.
    """
    section = cfg["simulate"] if "simulate" in cfg else cfg
    settings = Settings(section, "simulate")
    run_seed = _resolve_seed(settings, seed)
    if scale is None:
        scale = settings.number("scale") if "scale" in settings else 1.0
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise ValueError(f"invalid scale {scale!r}: expected a positive number such as 0.1 or 10")
    selected = select_families(families)
    tz = parse_utc_offset(str(settings.raw("utc_offset")))

    result = run_simulation(settings, run_seed, selected, scale)

    out = Path(out_dir)
    log_path = out / str(settings.raw("log_file"))
    truth_path = out / str(settings.raw("ground_truth_file"))
    lines = write_access_log(result.requests, log_path, tz)
    write_ground_truth(result.clients, truth_path, FAMILY_POLICY)

    summary = SimulationSummary(log_path, truth_path, run_seed, scale, lines, result.counts)
    _log_summary(summary)
    return summary


def select_families(families: Sequence[str] | None) -> list[str]:
    """Return the requested family names in FAMILIES order; None selects all.

    Raises ValueError for an unknown name or an empty selection.
    """
    if families is None:
        return list(FAMILIES)
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown families {unknown}; choose from {list(FAMILIES)}")
    if not families:
        raise ValueError(f"no families selected; pass None for all or some of {list(FAMILIES)}")
    return [name for name in FAMILIES if name in set(families)]


def _resolve_seed(settings: Settings, seed: int | None) -> int:
    """Return `seed`, or `simulate.seed` when it is None; raise ValueError unless it is a whole number >= 0."""
    value = settings.raw("seed") if seed is None else seed
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"invalid seed {value!r}: expected a whole number >= 0")
    return value


def _log_summary(summary: SimulationSummary) -> None:
    """Log lines written and the counts of every family."""
    logger.info(
        "simulated %d clients and %d lines (seed %d, scale %g) into %s and %s",
        summary.clients,
        summary.lines,
        summary.seed,
        summary.scale,
        summary.log_path,
        summary.ground_truth_path,
    )
    for name, counts in summary.families.items():
        logger.info(
            "  %-20s clients %6d  visits %6d  requests %7d", name, counts.clients, counts.visits, counts.requests
        )


# Tracebacks without local variables, which would print client addresses.
app = typer.Typer(
    add_completion=False,
    pretty_exceptions_show_locals=False,
    help="Simulate access logs of an affiliate site with ground truth.",
)


@app.command()
def main(
    out_dir: Path = typer.Argument(..., help="Folder for access.log and ground_truth.csv; created if missing."),
    params: Path | None = typer.Option(
        None,
        "--params",
        help=f"Params file. Default: ./{PARAMS_FILE} when it exists, otherwise conf/ composed with Hydra.",
    ),
    seed: int | None = typer.Option(None, "--seed", help="Random seed; default simulate.seed from the config."),
    scale: float | None = typer.Option(
        None, "--scale", help="Factor applied to every family count, e.g. 0.1 or 10; default simulate.scale."
    ),
    family: list[str] | None = typer.Option(
        None, "--family", help=f"Simulate only this family; repeat for several. One of: {', '.join(FAMILIES)}."
    ),
) -> None:
    """Write OUT_DIR/access.log and OUT_DIR/ground_truth.csv."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    simulate(_load_config(params), out_dir, seed=seed, families=family or None, scale=scale)


def _load_config(params: Path | None) -> DictConfig:
    """Load `params`, else ./params.yaml when it exists (as DVC stages run), else compose conf/."""
    if params is not None:
        return load_params(params)
    if Path(PARAMS_FILE).is_file():
        return load_params(PARAMS_FILE)
    logger.info("no %s in %s; composing conf/ with Hydra", PARAMS_FILE, Path.cwd())
    return compose_config()


if __name__ == "__main__":
    app()
