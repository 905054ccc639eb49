"""A known-bad implementation: the reference adapter, run on a mutated copy or with a fault switched on.

Started by the suite as ``python tests/power/faulty_adapter.py`` (a script, not ``-m``: ``-m`` would
put the working directory, which holds the real ``reference_impl``, first on ``sys.path``).

Environment:

``RP_POWER_IMPL_ROOT``  a directory holding a patched copy of ``reference_impl``; it goes first on
                        ``sys.path`` and the adapter refuses to run unless the copy is what was imported.
``RP_POWER_FAULT``      a fault of the adapter itself (see :data:`FAULTS`), for bugs easier to
                        express around the implementation than inside it.
``RP_POWER_ROLES``      roles to announce in ``hello`` (default both), so a run can skip the role an
                        entry does not touch.

``hello`` names the ``reference_impl`` file that was imported, so a report shows which code ran.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
FAULTS = {
    "caller-drops-last-item": "the caller loses the last item of every complete stream",
    "caller-reports-error-as-complete": "the caller reports a failed call as complete with the items it got",
    "worker-error-before-is-empty": "the worker's error_before handler ends without an item or an error",
}


def _import_path() -> None:
    root = os.environ.get("RP_POWER_IMPL_ROOT")
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
    sys.path.insert(0, str(REPOSITORY))
    if root:
        sys.path.insert(0, root)


_import_path()

import asyncio  # noqa: E402
from collections.abc import AsyncIterator  # noqa: E402
from typing import Any  # noqa: E402

import reference_impl  # noqa: E402
from fixtures.adapters import reference, standard_endpoints  # noqa: E402
from fixtures.adapters.protocol import configure_logging, serve_adapter  # noqa: E402


def _check_copy() -> str:
    """The imported ``reference_impl`` must be the copy asked for."""
    imported = str(Path(reference_impl.__file__).resolve())
    root = os.environ.get("RP_POWER_IMPL_ROOT")
    if root and not imported.startswith(str(Path(root).resolve()) + os.sep):
        raise SystemExit(f"faulty adapter: imported {imported}, not the copy under {root}")
    return imported


async def _empty_error_before(request: Any, context: Any) -> AsyncIterator[Any]:
    return
    yield  # an async generator that ends at once


class FaultyAdapter(reference.ReferenceAdapter):
    def __init__(self, fault: str | None, roles: list[str], imported: str) -> None:
        super().__init__()
        self.fault = fault
        self.roles = roles
        self.imported = imported

    async def hello(self, request: dict[str, Any]) -> dict[str, Any]:
        answer = await super().hello(request)
        answer["implementation"] = f"reference-faulty fault={self.fault or '-'} impl={self.imported}"
        answer["roles"] = self.roles
        return answer

    async def call(self, request: dict[str, Any]) -> dict[str, Any]:
        answer = await super().call(request)
        if self.fault == "caller-drops-last-item" and answer["outcome"] == "complete":
            answer["items"] = answer["items"][:-1]
        if self.fault == "caller-reports-error-as-complete" and answer["outcome"] == "error":
            answer["outcome"], answer["error"] = "complete", None
        return answer


def _endpoints(fault: str | None) -> dict[str, Any]:
    endpoints = dict(standard_endpoints.STANDARD_ENDPOINTS)
    if fault == "worker-error-before-is-empty":
        endpoints["error_before"] = _empty_error_before
    return endpoints


async def main() -> None:
    configure_logging()
    imported = _check_copy()
    fault = os.environ.get("RP_POWER_FAULT") or None
    if fault is not None and fault not in FAULTS:
        raise SystemExit(f"faulty adapter: unknown fault {fault!r}; known: {sorted(FAULTS)}")
    roles = [r for r in os.environ.get("RP_POWER_ROLES", "worker,caller").split(",") if r]
    reference.ENDPOINTS.clear()
    reference.ENDPOINTS.update(_endpoints(fault))
    adapter = FaultyAdapter(fault, roles, imported)
    print(f"faulty adapter: reference_impl from {imported}, fault {fault}", file=sys.stderr, flush=True)
    await serve_adapter(
        {"hello": adapter.hello, "serve": adapter.serve, "call": adapter.call, "records": adapter.records},
        adapter.shutdown,
    )


if __name__ == "__main__":
    asyncio.run(main())
