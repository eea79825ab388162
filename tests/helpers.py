"""Helpers shared by tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path


def pip_install_encoder_package(tmp_path: Path, package: str, source: str, entry_points: dict[str, str]) -> Path:
    """Build and pip-install a throwaway distribution declaring ``pearl.encoders`` entry points.

    It goes into a target folder under ``tmp_path`` (never the venv); put the returned folder on
    ``sys.path`` or ``PYTHONPATH`` to use it.

    Args:
        package: import name of the package.
        source: the package's ``__init__.py``.
        entry_points: entry-point name -> ``"ClassName"`` within the package.
    """
    src = tmp_path / "src"
    (src / package).mkdir(parents=True)
    (src / package / "__init__.py").write_text(textwrap.dedent(source))
    declared = "\n".join(f'{name} = "{package}:{cls}"' for name, cls in entry_points.items())
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{package.replace("_", "-")}"\nversion = "0.1"\n\n'
        f'[project.entry-points."pearl.encoders"]\n{declared}\n\n'
        f'[tool.setuptools]\npackages = ["{package}"]\n'
    )
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(site), str(src)],
        check=True,
        capture_output=True,
    )
    return site


def template_db(root: Path) -> Path:
    """An MLflow SQLite store with its tables made, to copy (creating them costs seconds per store)."""
    import pytest
    from mlflow import MlflowClient

    path = root / "template.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # MLflow roots a store's artifacts in the working directory
        MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def new_store(folder: Path, template: Path) -> str:
    """A fresh, initialised tracking store in ``folder`` (a copy of ``template``); its URI."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"
