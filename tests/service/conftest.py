"""A trained, registered champion in a temp MLflow store, shared by the service tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from omegaconf import DictConfig

from src.config import compose_config
from tests.helpers import workdir_config
from tests.service.postgres import PostgresServer, PostgresUnavailable
from tests.service.server import PSEUDONYM_KEY, ServiceProcess, child_env

# Share of the simulator's default client counts: enough sessions to train and register.
SIM_SCALE = 0.25
MODEL_NAME = "bot-click"
CHAMPION = "champion"
# A PostgreSQL URL to test the click store against, in place of a throwaway server.
POSTGRES_URL_ENV = "BOTCLICK_TEST_POSTGRES_URL"


@dataclass(frozen=True)
class TrainedRegistry:
    """A pipeline run on simulated traffic: its config, params file and MLflow store."""

    workdir: Path
    cfg: DictConfig
    params: Path
    db: Path

    @property
    def tracking_uri(self) -> str:
        """SQLite tracking URI of the store."""
        return f"sqlite:///{self.db}"

    def copy_store(self, dest: Path) -> str:
        """Copy the MLflow store to `dest` (artifacts stay shared) and return its tracking URI.

        Tests that move the alias work on a copy, so they do not affect each other.
        """
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(self.db, dest / "mlflow.db")
        return f"sqlite:///{dest / 'mlflow.db'}"


def train_and_register(cfg: DictConfig) -> None:
    """Run collect through train in process, then register the model as version 1, the champion.

    Evaluation is left out: the service tests need a registered model, whatever its quality.
    """
    from src.data.collect import collect
    from src.data.labels import build_labels
    from src.data.preprocess import preprocess
    from src.features.featurize import featurize
    from src.train.train import train

    p = {key: Path(str(value)) for key, value in cfg.paths.items()}
    collect(p["log_dir"], p["raw_events"], p["quarantine"], p["collect_report"], cfg)
    preprocess(p["raw_events"], p["events"], p["preprocess_report"], cfg)
    build_labels(p["events"], p["reviews"], p["ground_truth"], p["session_labels"], p["labels_report"], cfg)
    featurize(p["events"], p["features"], cfg)
    meta = train(p["features"], p["session_labels"], p["model_dir"], cfg)

    version = mlflow.register_model(meta.model_uri, MODEL_NAME).version
    MlflowClient().set_registered_model_alias(MODEL_NAME, CHAMPION, str(version))


@pytest.fixture(scope="session")
def trained_registry(tmp_path_factory: pytest.TempPathFactory) -> TrainedRegistry:
    """Simulate traffic, train on it and register the model as the champion, in a temp MLflow store."""
    from src.data.simulate import simulate

    workdir = tmp_path_factory.mktemp("service_registry")
    sim_dir = workdir / "logs" / "simulated"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'mlflow.db'}")
        patch.setenv("BOTCLICK_PSEUDONYM_KEY", PSEUDONYM_KEY)
        simulate(compose_config(["data.mix_simulated=false"]), sim_dir, scale=SIM_SCALE)
        cfg = workdir_config(
            workdir, sim_dir, [f"paths.ground_truth={sim_dir / 'ground_truth.csv'}", "data.mix_simulated=false"]
        )
        train_and_register(cfg)
    return TrainedRegistry(workdir, cfg, workdir / "params.yaml", workdir / "mlflow.db")


def add_version(tracking_uri: str) -> str:
    """Register the champion's run again as a new version and return its number (not yet champion)."""
    client = MlflowClient(tracking_uri=tracking_uri)
    first = client.get_model_version(MODEL_NAME, "1")
    return str(client.create_model_version(MODEL_NAME, first.source, run_id=first.run_id).version)


def set_champion(tracking_uri: str, version: str) -> None:
    """Point the champion alias at `version`."""
    MlflowClient(tracking_uri=tracking_uri).set_registered_model_alias(MODEL_NAME, CHAMPION, version)


def start_service(
    registry: TrainedRegistry,
    workdir: Path,
    tracking_uri: str | None = None,
    overrides: tuple[str, ...] = (),
    admin_token: str | None = None,
) -> ServiceProcess:
    """Start `botclick serve` with a SQLite click store and spill file under `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    extra = {} if admin_token is None else {"BOTCLICK_ADMIN_TOKEN": admin_token}
    store = (f"serve.store.url=sqlite:///{workdir / 'clicks.db'}", f"serve.store.spill_path={workdir / 'spill.jsonl'}")
    service = ServiceProcess(
        workdir=workdir,
        params=registry.params,
        env=child_env(tracking_uri or registry.tracking_uri, extra),
        overrides=(*store, *overrides),
    )
    return service.start()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """Return a PostgreSQL URL: BOTCLICK_TEST_POSTGRES_URL, else a throwaway server on 127.0.0.1.

    Skips when neither is available. A server that is installed but fails to start fails the test.
    """
    if os.environ.get(POSTGRES_URL_ENV):
        yield os.environ[POSTGRES_URL_ENV]
        return
    try:
        server = PostgresServer.start()
    except PostgresUnavailable as err:
        pytest.skip(f"{err}, or set {POSTGRES_URL_ENV} to a PostgreSQL URL")
    except subprocess.CalledProcessError as err:
        pytest.fail(f"starting PostgreSQL failed: {' '.join(err.cmd)}\n{err.stderr}")
    yield server.url
    server.stop()
