"""Execute both notebooks with nbclient, headless, with every output outside the repository.

The kernel is this test's own interpreter: a kernel spec for `sys.executable` is installed
into a temporary Jupyter data folder. MLFLOW_TRACKING_URI points at a temporary SQLite file.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import nbformat
import pytest
from nbclient import NotebookClient

from src.config import compose_config
from src.data.simulate import simulate
from tests.helpers import run_stages, workdir_config

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO_ROOT / "notebooks"
EXPLORE = "01_explore_real_logs.ipynb"
COMPARE = "02_compare_runs.ipynb"
REAL_LOGS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "access_logs"

KERNEL_NAME = "botclick-notebook-test"
CELL_TIMEOUT_S = 300
SIM_SCALE = 0.5
RUN_NAMES = ("xgboost", "baseline-ua-list", "baseline-request-rate")
# Addresses that the simulator gives its clients (conf/simulate/default.yaml).
SIMULATED_NETWORKS = (ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("2001:db8::/32"))
ADDRESS_TOKEN_RE = re.compile(r"[0-9A-Fa-f:.]{7,}")
TEXT_MIME_TYPES = ("text/plain", "text/html", "text/markdown")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def jupyter_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Jupyter data folder whose only kernel spec starts this interpreter."""
    prefix = tmp_path_factory.mktemp("jupyter")
    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", KERNEL_NAME],
        check=True,
        capture_output=True,
    )
    data_dir = prefix / "share" / "jupyter"
    spec = json.loads((data_dir / "kernels" / KERNEL_NAME / "kernel.json").read_text(encoding="utf-8"))
    assert spec["argv"][0] == sys.executable
    return data_dir


@pytest.fixture
def notebook_env(jupyter_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Set the kernel's environment: temporary Jupyter folders, MLflow store and Agg backend."""
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_data_dir))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("BOTCLICK_EXPLORE_LOGS", raising=False)
    return tmp_path


def execute(name: str) -> nbformat.NotebookNode:
    """Execute a notebook from the notebooks folder, as Jupyter would, and check it wrote nothing there."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    before = sorted(path.name for path in NOTEBOOKS.iterdir())
    client = NotebookClient(
        notebook, timeout=CELL_TIMEOUT_S, kernel_name=KERNEL_NAME, resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()
    assert sorted(path.name for path in NOTEBOOKS.iterdir()) == before
    return notebook


def output_text(notebook: nbformat.NotebookNode) -> str:
    """Return the text of every stream, error and text display output of the notebook."""
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.extend(output.get("traceback", []))
            data = output.get("data", {})
            parts.extend(str(data[mime]) for mime in TEXT_MIME_TYPES if mime in data)
    return "\n".join(parts)


def image_count(notebook: nbformat.NotebookNode) -> int:
    """Return the number of PNG image outputs."""
    return sum("image/png" in output.get("data", {}) for cell in notebook.cells for output in cell.get("outputs", []))


def address_tokens(text: str) -> set[str]:
    """Return every word of `text` that is a valid IPv4 or IPv6 address."""
    found = set()
    for token in ADDRESS_TOKEN_RE.findall(text):
        try:
            found.add(str(ipaddress.ip_address(token.strip(".:"))))
        except ValueError:
            continue
    return found


def real_log_addresses() -> set[str]:
    """Return the client addresses at the start of every real log line."""
    addresses = set()
    for path in REAL_LOGS.glob("*.log"):
        with path.open("rb") as handle:
            addresses.update(line.split(b" ", 1)[0].decode("ascii", "replace") for line in handle)
    return addresses


def test_explore_notebook_real_logs(notebook_env: Path) -> None:
    if not REAL_LOGS.is_dir() or not any(REAL_LOGS.glob("*.log")):
        pytest.skip(f"real access logs not found at {REAL_LOGS}; they live beside the repository in shared/data")

    notebook = execute(EXPLORE)
    text = output_text(notebook)

    assert "real access logs" in text
    assert "share of requests" in text
    assert "declared_crawler / bot" in text
    assert image_count(notebook) >= 4
    leaked = address_tokens(text) & real_log_addresses()
    assert not leaked, f"raw client addresses in the notebook outputs: {len(leaked)}"


def test_explore_notebook_simulated_fallback(notebook_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTCLICK_EXPLORE_LOGS", str(notebook_env / "no_logs_here"))

    notebook = execute(EXPLORE)
    text = output_text(notebook)

    assert "simulated log" in text
    assert "simulator / bot" in text
    assert "simulator / human" in text
    assert image_count(notebook) >= 4
    simulated = [token for token in address_tokens(text) if any(ipaddress.ip_address(token) in n for n in SIMULATED_NETWORKS)]
    assert not simulated, f"simulated client addresses in the notebook outputs: {simulated[:5]}"


def test_compare_notebook_empty_store(notebook_env: Path) -> None:
    store = notebook_env / "mlflow.db"

    notebook = execute(COMPARE)
    text = output_text(notebook)

    assert not store.exists(), "the notebook created the configured store instead of a temporary one"
    assert "demo runs on a simulated log" in text
    for run_name in RUN_NAMES:
        assert run_name in text
    assert "first model:" in text
    assert "champion" in text
    assert image_count(notebook) >= 2


def test_compare_notebook_existing_store(notebook_env: Path) -> None:
    simulated = simulate(compose_config(), notebook_env / "logs" / "simulated", scale=SIM_SCALE)
    cfg = workdir_config(notebook_env, simulated.log_path.parent, [f"paths.ground_truth={simulated.ground_truth_path}"])
    run_stages(cfg)
    mlflow.set_tracking_uri(f"sqlite:///{notebook_env / 'mlflow.db'}")
    runs_before = mlflow.search_runs(experiment_names=[str(cfg.mlflow.experiment)])
    model_run_id = runs_before.loc[runs_before["tags.mlflow.runName"] == "xgboost", "run_id"].iloc[0]

    notebook = execute(COMPARE)
    text = output_text(notebook)

    assert "the configured store" in text
    assert "demo runs" not in text
    assert model_run_id in text
    for run_name in RUN_NAMES:
        assert run_name in text
    assert "first model:" in text
    runs_after = mlflow.search_runs(experiment_names=[str(cfg.mlflow.experiment)])
    assert sorted(runs_after["run_id"]) == sorted(runs_before["run_id"])
