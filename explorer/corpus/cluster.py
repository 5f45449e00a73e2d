"""Ray cluster plumbing for corpus runs: importing Ray (an optional extra), connecting (``--ray``,
``--ray auto``, ``--ray HOST:PORT``), how a run is sharded (:class:`RayOptions`), planning the actors
(one per GPU, else one per :data:`CPUS_PER_WORKER` CPUs: :func:`plan`) and the fault-injection test hook.

Authentication: a cluster using Ray's token authentication reads the token itself (``~/.ray/auth_token``
or ``RAY_AUTH_TOKEN``, the same on every node and on the machine running the command); nothing here
handles it.

Ray is imported only by :func:`import_ray`, so importing this module costs nothing when no Ray run is
asked for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from explorer.errors import BadSetting

RAY_INSTALL = "install the ray extra: pip install -r requirements-ray.txt"
FAULT_ENV = "STRACE_RAY_FAULT"
CPUS_PER_WORKER = 4  # default share of a CPU-only cluster per actor


def import_ray():
    """The ``ray`` module, or a one-line :class:`BadSetting` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise BadSetting(RAY_INSTALL) from exc
    return ray


@dataclass(frozen=True)
class RayOptions:
    """How to shard a run. ``address``: ``"local"`` calls ``ray.init()`` (the cluster named by
    ``RAY_ADDRESS`` or started on this machine by ``ray start``, else a fresh local instance); ``"auto"``
    or ``HOST:PORT`` joins a running cluster. When Ray is already initialised in this process, that
    connection is used. ``workers``: number of actors (default: one per GPU of the cluster, else one per
    :data:`CPUS_PER_WORKER` CPUs). ``max_retries``: retries of a prompt whose actor died or failed, and of
    an actor's model load. ``in_flight``: prompts queued on each actor at once. ``fault``: the test hook
    (:func:`fault_kills`), from ``STRACE_RAY_FAULT`` by default."""

    address: str = "local"
    workers: int | None = None
    max_retries: int = 2
    in_flight: int = 2
    fault: str | None = field(default_factory=lambda: os.environ.get(FAULT_ENV) or None)  # test hook

    def __post_init__(self):
        if self.workers is not None and self.workers < 1:
            raise BadSetting("--ray-workers must be at least 1")
        if self.max_retries < 0:
            raise BadSetting("--max-retries must be 0 or more")
        if self.in_flight < 1:
            raise BadSetting("in_flight must be at least 1")


def connect(address: str):
    """Initialise Ray for ``address`` (see :class:`RayOptions`); returns the module and whether this call
    started the connection (then the caller shuts it down)."""
    ray = import_ray()
    if ray.is_initialized():
        return ray, False
    try:
        if address in ("local", "", None):
            ray.init()
        else:
            ray.init(address=address)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise BadSetting(f"cannot reach the Ray cluster at {address}: {exc}") from exc
    return ray, True


@dataclass(frozen=True)
class ActorPlan:
    """How many actors a run starts, the resources each asks for (``ray.remote(...).options(**resources)``)
    and the device they load the model on."""

    n: int
    resources: dict
    device: str

    @property
    def threads(self) -> int:
        """Torch threads per actor: its CPUs."""
        return int(self.resources.get("num_cpus", 1)) or 1


def plan(ray, device: str, workers: int | None) -> ActorPlan:
    """One GPU per actor when the cluster has GPUs (and ``device`` is not the CPU), with that node's
    CPUs per GPU; else CPUs, the largest equal share that fits ``workers`` actors (default: one per
    :data:`CPUS_PER_WORKER`) on the nodes."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    gpus = int(sum(r.get("GPU", 0) for r in nodes))
    if gpus and not device.startswith(("cpu", "mps")):
        n = min(workers or gpus, gpus)
        cpus = min(int(r.get("CPU", 0) // r["GPU"]) for r in nodes if r.get("GPU", 0) >= 1)
        return ActorPlan(n, {"num_gpus": 1, "num_cpus": cpus}, "cuda")
    if device.startswith("cuda"):
        raise BadSetting(f"--device {device} asked for, but the Ray cluster has no GPU")
    cpus = [int(r.get("CPU", 0)) for r in nodes]
    total = sum(cpus)
    if total < 1:
        raise BadSetting("the Ray cluster has no CPU to run workers on")
    n = min(workers or max(1, total // CPUS_PER_WORKER), total)
    per = max(c for c in range(1, max(cpus) + 1) if sum(x // c for x in cpus) >= n)  # the largest share that fits
    return ActorPlan(n, {"num_cpus": per}, device)


# test hook -------------------------------------------------------------------------------------------
# STRACE_RAY_FAULT makes actors kill their own process (SIGKILL, as the kernel's out-of-memory killer
# would): ``after:N`` kills the first actor when it is given its (N+1)-th prompt; ``text:S`` kills any actor
# given a prompt whose text contains ``S``; both may be given, separated by a comma.


def actor_fault(fault: str | None, slot: int, generation: int) -> str | None:
    """The fault spec of the actor started in ``slot`` for the ``generation``-th time (from 0): ``after:N``
    applies to the very first actor only."""
    if fault and (slot, generation) != (0, 0):
        fault = ",".join(p for p in fault.split(",") if not p.startswith("after:")) or None
    return fault


def fault_kills(spec: str | None, n_done: int, text: str) -> bool:
    """Whether an actor with fault ``spec`` that has traced ``n_done`` prompts dies on ``text``."""
    for part in (spec or "").split(","):
        kind, _, value = part.partition(":")
        if (kind == "after" and n_done >= int(value)) or (kind == "text" and value and value in text):
            return True
    return False
