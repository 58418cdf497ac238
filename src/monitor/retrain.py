"""Continuous training: add new logs to the pipeline input, run the pipeline, pick held-out sessions.

The retrain input is every file the pipeline reads now (`paths.log_dir` matched by
`data.log_globs`), every file of the last retrain's input, and the new log files. They
are staged as symlinks in `<workdir>/input`, so no log is copied, and each retrain adds
the new logs to the previous training input. Symlinked logs are read as they are at
retrain time, so a log that rotation renamed is read under its new name only if the new
logs include it.

The held-out sessions for the gate are the new logs' sessions in the pipeline's own
test split: the challenger never trained on them, and the champion never saw the new logs.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from src.config import PARAMS_FILE, load_params
from src.data.labels import GROUND_TRUTH_COLUMNS, read_csv_text
from src.monitor.reference import has_reference_sample, log_reference_sample
from src.monitor.registry_ops import current_champion, mark_challenger, registry_client
from src.monitor.summary import RETRAIN_LOG_FILE
from src.train.dataset import last_rows, load_dataset
from src.train.model_io import load_model
from src.train.split import TEST

logger = logging.getLogger(__name__)

INPUT_DIR = "input"
STAGING_DIR = "input.new"
RUN_DIR = "run"
GROUND_TRUTH_FILE = "ground_truth.csv"
GROUND_TRUTH_KEY = ["ip", "user_agent"]
DVC_RUNNER, INPROCESS_RUNNER = "dvc", "inprocess"
OUTPUT_TAIL_CHARS = 4000


class RetrainError(RuntimeError):
    """Raised when the retraining pipeline fails or leaves no new model."""


@dataclass
class StagedInput:
    """The pipeline input of one retrain."""

    log_dir: Path
    ground_truth: Path
    previous_files: list[Path]
    new_files: list[Path]
    # Source names that collect gives the new files ("<folder>/<file>").
    new_sources: list[str]


@dataclass
class RetrainResult:
    """A finished retrain: the registered version, its run and the held-out sessions."""

    version: str
    run_id: str
    runner: str
    holdout: pd.DataFrame
    input_files: int
    notes: list[str] = field(default_factory=list)


def input_files(log_dir: Path, patterns: Sequence[str]) -> list[Path]:
    """Return the resolved files in `log_dir` that match `patterns`; symlinks resolve to their targets.

    A missing folder gives an empty list, and a link whose target is gone is left out with a warning.
    """
    if not log_dir.is_dir():
        return []
    matched = sorted({path for pattern in patterns for path in log_dir.glob(str(pattern))})
    for path in matched:
        if not path.is_file():
            logger.warning("pipeline input %s no longer exists (a rotated log?); the retrain leaves it out", path)
    return list(dict.fromkeys(path.resolve() for path in matched if path.is_file()))


def previous_input_files(cfg: DictConfig, workdir: Path) -> list[Path]:
    """Return the pipeline's current input together with the input of the last retrain.

    The in-process runner leaves params.yaml unchanged. Without the last retrain's input,
    each retrain would therefore drop the logs that the previous one added.
    """
    current = input_files(Path(str(cfg.paths.log_dir)), list(cfg.data.log_globs))
    if not current:
        logger.warning("no pipeline input in %s matches %s", cfg.paths.log_dir, list(cfg.data.log_globs))
    files = list(dict.fromkeys([*current, *input_files(workdir / INPUT_DIR, ["*"])]))

    # With data.mix_simulated on, collect reads the simulator's folder by itself, so
    # staging its files as well would read every simulated line twice.
    if bool(cfg.data.get("mix_simulated", False)):
        mixed_in = set(input_files(Path(str(cfg.paths.sim_dir)), list(cfg.data.log_globs)))
        files = [path for path in files if path not in mixed_in]
    return files


def merge_ground_truth(files: Sequence[Path], out: Path) -> int:
    """Write one ground-truth CSV from several; a later file's row replaces an earlier one of the same client.

    Returns the number of rows written. A missing file is skipped.
    """
    frames = [read_csv_text(path, GROUND_TRUTH_COLUMNS, "ground truth")[GROUND_TRUTH_COLUMNS] for path in files if path.is_file()]
    merged = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=GROUND_TRUTH_COLUMNS)
    unique = merged.drop_duplicates(GROUND_TRUTH_KEY, keep="last")
    if len(unique) < len(merged):
        logger.info("ground truth: %d rows of clients listed again in a later file were replaced", len(merged) - len(unique))
    out.parent.mkdir(parents=True, exist_ok=True)
    unique.to_csv(out, index=False)
    return len(unique)


def stage_input(cfg: DictConfig, new_files: Sequence[Path], ground_truth: Sequence[Path], workdir: Path) -> StagedInput:
    """Link the earlier input (see `previous_input_files`) and the new files into `<workdir>/input`.

    The folder is rebuilt beside the old one and swapped in, so the old links can be read
    while the new ones are made.
    """
    new = list(dict.fromkeys(Path(path).resolve() for path in new_files))
    previous = [path for path in previous_input_files(cfg, workdir) if path not in set(new)]
    staging, final = workdir / STAGING_DIR, workdir / INPUT_DIR
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)

    links = []
    for index, target in enumerate([*previous, *new]):
        link = staging / f"{index:04d}-{target.name}"
        link.symlink_to(target)
        links.append(link)

    truth = workdir / GROUND_TRUTH_FILE
    rows = merge_ground_truth([Path(str(cfg.paths.ground_truth)), *map(Path, ground_truth)], truth)
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    new_sources = [f"{final.name}/{link.name}" for link in links[len(previous):]]
    logger.info("retrain input: %d earlier files and %d new files in %s; %d ground-truth rows", len(previous), len(new), final, rows)
    return StagedInput(final, truth, previous, new, new_sources)


def retrain_overrides(staged: StagedInput, cfg: DictConfig) -> list[str]:
    """Return the Hydra overrides that point the pipeline at the staged input."""
    overrides = [
        f"paths.log_dir={staged.log_dir}",
        "data.log_globs=['*']",
        f"paths.ground_truth={staged.ground_truth}",
        *[str(item) for item in cfg.monitor.retrain.overrides],
    ]
    # NOTE: the evaluate stage may not have the evaluate.auto_promote switch yet. Without it,
    # the stage can move the champion alias itself, and `undo_auto_promotion` reverts that.
    if "auto_promote" in cfg.evaluate:
        overrides.append("evaluate.auto_promote=false")
    return overrides


def run_inprocess(cfg: DictConfig, overrides: Sequence[str], run_dir: Path) -> DictConfig:
    """Run collect through evaluate in this process, with every output under `run_dir`."""
    from src.data.collect import collect
    from src.data.labels import build_labels
    from src.data.preprocess import preprocess
    from src.features.featurize import featurize
    from src.train.evaluate import evaluate
    from src.train.train import train

    # Resolved first, so that moving paths.root cannot move the input paths built from it.
    merged = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    run_cfg = OmegaConf.create(OmegaConf.to_container(merged, resolve=True))
    keep = set(cfg.monitor.retrain.input_path_keys)
    shutil.rmtree(run_dir, ignore_errors=True)
    for key, value in merged.paths.items():
        if key not in keep:
            target = run_dir / str(key) / Path(str(value)).name
            target.parent.mkdir(parents=True, exist_ok=True)
            run_cfg.paths[key] = str(target)

    p = {key: Path(str(value)) for key, value in run_cfg.paths.items()}
    collect(p["log_dir"], p["raw_events"], p["quarantine"], p["collect_report"], run_cfg)
    preprocess(p["raw_events"], p["events"], p["preprocess_report"], run_cfg)
    build_labels(p["events"], p["reviews"], p["ground_truth"], p["session_labels"], p["labels_report"], run_cfg)
    featurize(p["events"], p["features"], run_cfg)
    train(p["features"], p["session_labels"], p["model_dir"], run_cfg)
    evaluate(p["features"], p["session_labels"], p["model_dir"], p["metrics"], p["evaluation"], p["plots_dir"], run_cfg)
    return run_cfg


def run_dvc(cfg: DictConfig, overrides: Sequence[str], log_path: Path) -> DictConfig:
    """Run `dvc exp run` with the overrides in the current folder (the repo root); return the new params."""
    if not Path("dvc.yaml").is_file():
        raise RetrainError(f"no dvc.yaml in {Path.cwd()}; run the drift check from the repository root, or set monitor.retrain.runner=inprocess")
    name = datetime.now(timezone.utc).strftime("drift-%Y%m%d-%H%M%S")
    command = [*map(str, cfg.monitor.retrain.dvc_command), "--name", name]
    for override in overrides:
        command += ["-S", override]
    logger.info("running %s", " ".join(command))

    result = subprocess.run(command, capture_output=True, text=True, check=False)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text(f"$ {' '.join(command)}\n{result.stdout}\n{result.stderr}", encoding="utf-8")
    if result.returncode != 0:
        raise RetrainError(f"`{' '.join(command)}` exited with {result.returncode}; see {log_path}:\n{result.stderr[-OUTPUT_TAIL_CHARS:]}")
    run_cfg = OmegaConf.merge(cfg, load_params(PARAMS_FILE))
    run_cfg.monitor = cfg.monitor
    return run_cfg


def undo_auto_promotion(cfg: DictConfig, champion_before: str, version: str) -> bool:
    """Put the champion alias back when the evaluate stage moved it to `version` itself.

    Returns True when it did. Only the promotion gate may promote during a drift job.
    """
    client = registry_client(cfg)
    if current_champion(client, cfg) != version or champion_before == version:
        return False
    client.set_registered_model_alias(str(cfg.mlflow.registered_model), str(cfg.mlflow.champion_alias), champion_before)
    mark_challenger(client, cfg, version)
    logger.warning("the evaluate stage promoted version %s itself; champion moved back to %s until the gate decides", version, champion_before)
    return True


def holdout_sessions(run_cfg: DictConfig, new_sources: Sequence[str]) -> pd.DataFrame:
    """Return the new logs' sessions in the pipeline's test split, at their last request."""
    data = load_dataset(Path(str(run_cfg.paths.features)), Path(str(run_cfg.paths.session_labels)), run_cfg)
    test = data.part(TEST)
    return last_rows(test[test["source"].isin(set(new_sources))]).reset_index(drop=True)


def registered_version(run_cfg: DictConfig) -> tuple[str, str]:
    """Return the version the evaluate stage registered and its training run id."""
    evaluation = json.loads(Path(str(run_cfg.paths.evaluation)).read_text(encoding="utf-8"))
    version = str(evaluation.get("promotion", {}).get("version", ""))
    _, meta = load_model(Path(str(run_cfg.paths.model_dir)))
    if not version:
        raise RetrainError(f"{run_cfg.paths.evaluation} names no registered version; the evaluate stage did not register the model")
    return version, meta.run_id


def retrain(cfg: DictConfig, new_files: Sequence[Path], ground_truth: Sequence[Path], report_dir: Path) -> RetrainResult:
    """Run the pipeline on the current input plus `new_files` and return the new version with its held-out sessions.

    The caller holds the monitor lock. Raises RetrainError when the pipeline fails.
    """
    workdir = Path(str(cfg.monitor.retrain.workdir))
    champion_before = current_champion(registry_client(cfg), cfg)
    staged = stage_input(cfg, new_files, ground_truth, workdir)
    overrides = retrain_overrides(staged, cfg)

    runner = str(cfg.monitor.retrain.runner)
    if runner == DVC_RUNNER:
        run_cfg = run_dvc(cfg, overrides, report_dir / RETRAIN_LOG_FILE)
    elif runner == INPROCESS_RUNNER:
        run_cfg = run_inprocess(cfg, overrides, workdir / RUN_DIR)
    else:
        raise ValueError(f"invalid monitor.retrain.runner {runner!r}: expected {DVC_RUNNER!r} or {INPROCESS_RUNNER!r}")

    version, run_id = registered_version(run_cfg)
    notes = []
    if champion_before is not None and undo_auto_promotion(cfg, champion_before, version):
        notes.append(f"the evaluate stage promoted version {version} itself; the champion alias was moved back to {champion_before}")
    if not has_reference_sample(run_id, cfg):
        booster, _ = load_model(Path(str(run_cfg.paths.model_dir)))
        data = load_dataset(Path(str(run_cfg.paths.features)), Path(str(run_cfg.paths.session_labels)), run_cfg)
        log_reference_sample(data, booster, run_cfg, run_id=run_id)
    holdout = holdout_sessions(run_cfg, staged.new_sources)
    logger.info("retrained with the %s runner: version %s (run %s), %d held-out sessions", runner, version, run_id, len(holdout))
    return RetrainResult(version, run_id, runner, holdout, len(staged.previous_files) + len(staged.new_files), notes)
