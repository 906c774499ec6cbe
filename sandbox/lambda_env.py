"""The Lambda execution environment the sandbox's workers run in: Python 3.13 and nothing else
importable but what the python3.13 runtime and the function's package give.

On AWS a function sees, in this order: its own code (``/var/task``, the template's CodeUri),
the layer (``/opt/python``: what ``sam build`` installed from ``layers/publishing/requirements.txt``
plus the layer's own code), the runtime's boto3 and its dependencies, and the standard
library. The sandbox builds the same thing once per set of pins, outside the checkout:

* ``runtime/``: ``requirements/lambda-runtime.txt`` (boto3 at the runtime's versions);
* ``layer/``: ``layers/publishing/requirements.txt`` for this machine's architecture (the
  arm64 wheels ``sam build`` makes cannot be imported on x86-64; the pins are the same);

and the layer's and functions' own code is used from the source tree, as ``sam build`` copies it.
A worker runs ``python3.13 -I -S`` (no site-packages, no user site, no PYTHON* variables) with
exactly these directories on ``sys.path``, so a module the layer does not ship fails to import
in the sandbox as it would on Lambda.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_REQUIREMENTS = ROOT / "requirements" / "lambda-runtime.txt"
LAYER_DIR = ROOT / "layers" / "publishing"
LAYER_REQUIREMENTS = LAYER_DIR / "requirements.txt"
PYTHON_VERSION = "3.13"


class LambdaEnvironmentError(RuntimeError):
    """The Lambda-like environment cannot be made here; the message says how to fix it."""


@dataclass(frozen=True)
class LambdaEnvironment:
    python: Path  # the runtime's interpreter (Python 3.13)
    runtime_dir: Path  # boto3 and its dependencies at the runtime's versions
    layer_deps_dir: Path  # the layer's requirements, installed for this host
    layer_code_dir: Path  # the layer's own code (the mlpublish package)

    def sys_path(self, code_dir: Path) -> list[str]:
        """Lambda's search order: function code, the layer, the runtime's SDK."""
        return [str(code_dir), str(self.layer_code_dir), str(self.layer_deps_dir), str(self.runtime_dir)]

    def layer_packages(self) -> dict[str, str]:
        """Distribution name -> version of everything installed into the layer."""
        return installed(self.layer_deps_dir)

    def runtime_packages(self) -> dict[str, str]:
        return installed(self.runtime_dir)


def installed(directory: Path) -> dict[str, str]:
    """Distribution name (PEP 503) -> version, from the *.dist-info directories pip or sam left."""
    found = {}
    for info in directory.glob("*.dist-info"):
        name, _, version = info.name.removesuffix(".dist-info").rpartition("-")
        found[normalise(name)] = version
    return found


def normalise(name: str) -> str:
    """PEP 503 names, so pip's and sam's spellings compare equal."""
    return name.lower().replace("_", "-").replace(".", "-")


def find_python() -> Path:
    """The Python 3.13 interpreter: $MLPUBLISH_LAMBDA_PYTHON, python3.13 on PATH, or pyenv's."""
    candidates = [os.environ.get("MLPUBLISH_LAMBDA_PYTHON", "")]
    pyenv = os.path.expanduser(f"~/.pyenv/versions/{PYTHON_VERSION}*/bin/python{PYTHON_VERSION}")
    candidates += sorted(glob.glob(pyenv))
    candidates.append(shutil.which(f"python{PYTHON_VERSION}") or "")
    for candidate in filter(None, candidates):
        try:
            version = subprocess.run(
                [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            ).stdout.strip()
        except OSError:
            continue
        if version == PYTHON_VERSION:
            return Path(candidate)
    raise LambdaEnvironmentError(
        f"the sandbox runs the Lambdas on Python {PYTHON_VERSION}, the functions' runtime, and none was found; "
        f"install it (e.g. `pyenv install {PYTHON_VERSION}.0`) or set MLPUBLISH_LAMBDA_PYTHON to its path"
    )


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "mlpublish" / "lambda-env"


def ensure_environment() -> LambdaEnvironment:
    """The environment for the current pins, built on first use (about 10 s) and then reused."""
    python = find_python()
    key = hashlib.sha256(
        RUNTIME_REQUIREMENTS.read_bytes() + LAYER_REQUIREMENTS.read_bytes() + str(python.resolve()).encode()
    ).hexdigest()[:16]
    home = cache_root() / key
    env = LambdaEnvironment(
        python=python,
        runtime_dir=home / "runtime",
        layer_deps_dir=home / "layer",
        layer_code_dir=LAYER_DIR,
    )
    done = home / ".complete"
    if done.exists():
        return env
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder; others wait and reuse its result
        if not done.exists():
            _pip_install(python, RUNTIME_REQUIREMENTS, env.runtime_dir)
            _pip_install(python, LAYER_REQUIREMENTS, env.layer_deps_dir)
            done.touch()
    return env


def _pip_install(python: Path, requirements: Path, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    command = [
        str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-warn-script-location",
        "--only-binary=:all:", "--target", str(target), "-r", str(requirements),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        errors = "\n".join(line for line in result.stderr.splitlines() if not line.startswith("WARNING"))
        raise LambdaEnvironmentError(f"could not install {requirements.name} for the Lambda workers:\n{errors}")
