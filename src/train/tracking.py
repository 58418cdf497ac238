"""MLflow setup and run metadata: tracking URI, experiment, git commit, data version."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
from pathlib import Path

import mlflow
from omegaconf import DictConfig

logger = logging.getLogger(__name__)

HASH_CHUNK_BYTES = 1 << 20


def tracking_uri(cfg: DictConfig) -> str:
    """Return MLFLOW_TRACKING_URI when set, else `mlflow.tracking_uri` from the config."""
    return os.environ.get("MLFLOW_TRACKING_URI") or str(cfg.mlflow.tracking_uri)


def configure_tracking(cfg: DictConfig) -> str:
    """Point MLflow at the configured store and experiment, creating the experiment once.

    New experiments keep their artifacts under `mlflow.artifact_root` (relative to the
    working directory), because the SQLite store has no artifact location of its own.
    Returns the experiment id.
    """
    uri = tracking_uri(cfg)
    mlflow.set_tracking_uri(uri)
    name = str(cfg.mlflow.experiment)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        artifact_root = Path(str(cfg.mlflow.artifact_root)).resolve()
        experiment_id = mlflow.create_experiment(name, artifact_location=artifact_root.as_uri())
        logger.info("created MLflow experiment %s (%s) with artifacts in %s", name, experiment_id, artifact_root)
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def file_md5(path: Path) -> str:
    """Return the MD5 of a file's bytes, the hash DVC 3 records for a file output."""
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def data_version(paths: list[Path]) -> dict[str, str]:
    """Return the DVC-style MD5 of each input and one combined version string."""
    hashes = {f"data_version.{p.name}": file_md5(p) for p in paths}
    combined = hashlib.md5("".join(sorted(hashes.values())).encode()).hexdigest()
    return {**hashes, "data_version": combined}


def git_commit() -> str:
    """Return the current git commit, with "-dirty" for uncommitted changes, or "unknown"."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        logger.warning("could not read the git commit: %s", exc)
        return "unknown"
    return f"{commit}-dirty" if status else commit
