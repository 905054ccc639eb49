"""CI smoke run: every profile, headless, a few seconds each, judged by its thresholds.

::

    python -m loadtests.smoke                       # reference worker, every plane, 4 s per profile
    python -m loadtests.smoke --seconds 10 --impl dynamo --plane tcp --profile unary --profile soak

Each plane gets one worker (``loadtests.target_process``: the adapter, and a
NATS server for NATS), put up once and called by every profile in turn, as a
deployed worker serves one load after another; starting a worker (and a NATS
server) for each of the 12 runs was about a fifth of the smoke's time.  Each
profile is one ``locust -f loadtests/ --headless --rp-discovery DIR`` process
(fixed user count, fixed operation mix) whose exit code is Locust's own gate;
its JSON output is then judged again by ``loadtests.check``, so a CI job
exercises both.  Every Locust process is bounded: started in its own session,
waited for ``--seconds`` plus a startup/stop allowance, then SIGTERM and
SIGKILL by PID; the worker is stopped by PID after the plane's last profile.
Given ``--rp-discovery`` (a worker already serving), none is started.  Exit
status: 0 when every profile passed.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from loadtests.check import judge
from loadtests.load_session import SessionSettings
from loadtests.profiles import PROFILES, Profile
from loadtests.stats_rows import rows_from_json
from loadtests.target_process import TargetProcess
from reference_impl.planes import PLANES

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ALLOWANCE_S = 90.0  # Locust start (finding the worker) and stop


def locust_command(profile: Profile, seconds: int, out: Path, extra: list[str]) -> list[str]:
    users = str(profile.smoke_users)
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(PROJECT_ROOT / "loadtests"),
        "--headless",
        "--only-summary",
        "-u",
        users,
        "-r",
        users,
        "-t",
        f"{seconds}s",
        "--stop-timeout",
        "5",
        "--json-file",
        str(out / profile.name),
        "--csv",
        str(out / profile.name),
        "--rp-summary",
        str(out / f"{profile.name}-verdict.json"),
        "--rp-ramp-seconds",
        str(max(1.0, seconds / 2)),
        *extra,
        profile.user_class,
    ]


def run_bounded(command: list[str], timeout: float, log_path: Path) -> int:
    """Run ``command``; past ``timeout``, SIGTERM then SIGKILL its process group (by PID)."""
    python_path = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": python_path},
            start_new_session=True,
        )
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    process.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
            return -1


def smoke_profile(profile: Profile, seconds: int, out: Path, extra: list[str]) -> bool:
    log_path = out / f"{profile.name}.log"
    code = run_bounded(locust_command(profile, seconds, out, extra), seconds + ALLOWANCE_S, log_path)
    json_path = out / f"{profile.name}.json"
    if code == -1:
        print(f"[FAIL] {profile.name}: Locust did not finish within {seconds + ALLOWANCE_S:.0f}s (killed); {log_path}")
        return False
    if not json_path.exists():
        print(f"[FAIL] {profile.name}: Locust exited {code} without writing {json_path}; {log_path}")
        print(_tail(log_path))
        return False
    verdicts = judge(rows_from_json(json_path), [profile.name])
    for verdict in verdicts:
        print(verdict.summary())
    passed = code == 0 and all(v.passed for v in verdicts)
    if code != 0:
        print(f"    Locust exited {code}; log: {log_path}")
        print(_tail(log_path))
    return passed


def _worker_options(passthrough: list[str]) -> argparse.Namespace:
    """The options meant for Locust that say which worker to call or how to start it."""
    parser = argparse.ArgumentParser(add_help=False)
    for option in ("--rp-discovery", "--rp-impl-cmd", "--rp-impl-python", "--rp-nats-url", "--rp-log-dir"):
        parser.add_argument(option, default="")
    return parser.parse_known_args(passthrough)[0]


def _target_arguments(impl: str, plane: str, passthrough: list[str], plane_out: Path) -> list[str]:
    """``loadtests.target_process``'s arguments for the plane's worker (its adapter's log kept in ``plane_out``, or
    in the plane's directory under ``--rp-log-dir``)."""
    given = _worker_options(passthrough)
    log_dir = Path(given.rp_log_dir) / plane if given.rp_log_dir else plane_out / "worker"
    settings = SessionSettings(
        plane=plane,
        impl=impl,
        impl_cmd=given.rp_impl_cmd or None,
        impl_python=given.rp_impl_python or None,
        nats_url=given.rp_nats_url or None,
        log_dir=str(log_dir),
    )
    return settings.target_arguments()


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join("    | " + line for line in path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=4, help="run time per profile (whole seconds)")
    parser.add_argument("--profile", action="append", choices=sorted(PROFILES), help="profile(s) to run (default all)")
    parser.add_argument("--impl", default="reference", help="implementation (--rp-impl)")
    parser.add_argument("--plane", action="append", help=f"request plane(s) (--rp-plane; default {', '.join(PLANES)})")
    parser.add_argument("--out", default=None, help="directory for Locust's CSV/JSON and logs (default: a temp dir)")
    args, passthrough = parser.parse_known_args(argv)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="rp-smoke-"))
    names = args.profile or list(PROFILES)
    planes = args.plane or list(PLANES)
    print(f"smoke: {', '.join(names)} on {args.impl} over {', '.join(planes)}, {args.seconds}s each; in {out}")
    results = {}
    for plane in planes:
        plane_out = out / plane
        plane_out.mkdir(parents=True, exist_ok=True)
        extra = ["--rp-impl", args.impl, "--rp-plane", plane, *passthrough]
        target = None
        if not _worker_options(passthrough).rp_discovery:
            target = TargetProcess(
                _target_arguments(args.impl, plane, passthrough, plane_out), str(plane_out / "target.log")
            )
            try:
                info = target.start()
            except RuntimeError as exc:
                for name in names:
                    print(f"{plane}: [FAIL] {name}: {exc}")
                    results[f"{plane}/{name}"] = False
                continue
            extra += ["--rp-discovery", info["discovery_dir"]]
            if info.get("nats_url"):
                extra += ["--rp-nats-url", info["nats_url"]]
        try:
            for name in names:
                print(f"{plane}:", end=" ", flush=True)
                results[f"{plane}/{name}"] = smoke_profile(PROFILES[name], args.seconds, plane_out, extra)
        finally:
            if target is not None:
                target.stop()
    failed = [name for name, ok in results.items() if not ok]
    print(
        f"smoke: {len(results) - len(failed)} passed, {len(failed)} failed"
        + (f" ({', '.join(failed)})" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
