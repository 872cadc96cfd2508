"""A real single-node SLURM cluster for the tests (issue 6).

Uses Debian's munged, slurmctld and slurmd (installed by `make test` through the
Makefile's `debs` target); installs nothing. `slurm_cluster(tmp)` writes
slurm.conf, cgroup.conf and gres.conf into `tmp`, starts munged (as the `munge`
user, unless one already answers), slurmctld and slurmd, waits for the node to
be idle, yields a `SlurmCluster`, and stops every daemon it started by PID
afterwards, also when the test fails.

The node has the machine's CPUs and memory and one GPU in name only (a GRES
whose device file is /dev/null), so that `--gpus=1` submissions of GPU rules are accepted
and scheduled on a machine without a GPU. Facts for Debian 12 / slurm 22.05
that make a single node work: ProctrackType=proctrack/linuxproc,
TaskPlugin=task/none, no accounting (so `sacct` does not answer and status
queries go through `squeue`, with MinJobAge high enough that finished jobs stay
visible), SlurmUser=root, state and spool directories under `tmp`.
"""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
MUNGE_DIR = Path("/run/munge")
PARTITION = "debug"
MIN_JOB_AGE = 3600
"""Seconds a finished job stays in slurmctld (and in `squeue`/`scontrol`)."""


def missing_binaries() -> list[str]:
    """The daemons and clients this module needs that are not on PATH."""
    needed = ("munged", "munge", "unmunge", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo")
    return [b for b in needed if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]


def _binary(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_resources() -> tuple[str, int, int]:
    """(node name, CPUs, RealMemory in MB) as slurmd itself reports them."""
    out = subprocess.run([_binary("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout
    fields = dict(kv.split("=", 1) for kv in out.split() if "=" in kv)
    # Slightly below the measured memory: slurmd drains a node whose memory is
    # below the configured RealMemory.
    return fields["NodeName"], int(fields["CPUs"]), int(int(fields["RealMemory"]) * 0.95)


@dataclass
class SlurmCluster:
    """A running single-node cluster: its config, environment and logs."""

    root: Path
    conf: Path
    node: str
    cpus: int
    mem_mb: int
    partition: str = PARTITION

    @property
    def env(self) -> dict[str, str]:
        """The environment for SLURM clients (and Snakemake) that talk to this cluster.

        PATH starts with root/bin, whose `srun` re-exports SLURM_CONF: inside a
        job, Snakemake's jobstep executor strips SLURM_* variables before its
        `srun`, which on a real cluster then reads /etc/slurm/slurm.conf.
        """
        path = os.pathsep.join([str(self.root / "bin"), os.environ.get("PATH", "")])
        return {**os.environ, "SLURM_CONF": str(self.conf), "PATH": path}

    def run(self, *args: str) -> str:
        """Run one SLURM client command against this cluster; its stdout."""
        return subprocess.run(args, env=self.env, capture_output=True, text=True, check=True).stdout

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still knows (finished ones for MIN_JOB_AGE s): `scontrol show job` records."""
        out = self.run("scontrol", "show", "job", "--oneliner")
        if "No jobs in the system" in out:
            return []
        records = []
        for line in out.splitlines():
            record = {}
            for kv in line.split():
                key, _, value = kv.partition("=")
                record.setdefault(key, value)
            records.append(record)
        return records

    def ctld_log(self) -> str:
        return (self.root / "slurmctld.log").read_text()

    def node_state(self) -> str:
        return self.run("sinfo", "--noheader", "--nodes", self.node, "--format=%T").strip()


def _write_configs(root: Path, node: str, cpus: int, mem_mb: int) -> Path:
    for d in ("state", "spool"):
        (root / d).mkdir(parents=True, exist_ok=True)
    conf = root / "slurm.conf"
    conf.write_text(
        f"""\
# Written by tests/slurm_cluster.py: a single-node cluster for the tests.
ClusterName=dm2gal-test
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmctldDebug=verbose
SlurmdDebug=verbose
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge={MIN_JOB_AGE}
SchedulerType=sched/backfill
GresTypes=gpu
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} Gres=gpu:1 State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""
    )
    (root / "cgroup.conf").write_text("# Unused: ProctrackType=proctrack/linuxproc, TaskPlugin=task/none.\nCgroupPlugin=autodetect\n")
    # The machine has no GPU; slurmd ignores a gpu GRES without a device file,
    # so the node's one "GPU" is /dev/null (harmless: TaskPlugin=task/none
    # constrains no devices).
    (root / "gres.conf").write_text(f"NodeName={node} Name=gpu File=/dev/null\n")
    bin_dir = root / "bin"
    bin_dir.mkdir(exist_ok=True)
    srun = bin_dir / "srun"
    srun.write_text(f'#!/bin/sh\nSLURM_CONF={conf} exec {_binary("srun")} "$@"\n')
    srun.chmod(0o755)
    return conf


def _munge_answers() -> bool:
    munge = subprocess.run(["munge", "-n"], capture_output=True)
    if munge.returncode != 0:
        return False
    return subprocess.run(["unmunge"], input=munge.stdout, capture_output=True).returncode == 0


def _wait(predicate, timeout: float, what: str, logs=()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    tails = "".join(f"\n--- {p}:\n" + Path(p).read_text()[-3000:] for p in logs if Path(p).exists())
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}{tails}")


def _stop(pid: int, timeout: float = 20) -> None:
    """SIGTERM a process that is not our child by PID, SIGKILL it after `timeout` s."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)


def _start_munged(stack: ExitStack) -> None:
    """munged as the munge user, with /run/munge owned by it; stopped by PID on exit."""
    if _munge_answers():
        return  # a munged is already running (e.g. the system's): use it, leave it alone
    munge = pwd.getpwnam("munge")
    MUNGE_DIR.mkdir(mode=0o755, exist_ok=True)
    os.chown(MUNGE_DIR, munge.pw_uid, munge.pw_gid)
    pid_file = MUNGE_DIR / "munged.pid"
    proc = subprocess.Popen(
        ["runuser", "-u", "munge", "--", _binary("munged"), "--foreground", "--force",
         f"--pid-file={pid_file}", f"--log-file={MUNGE_DIR / 'munged.log'}",
         f"--seed-file={MUNGE_DIR / 'munged.seed'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    # runuser stays the parent of munged; stopping runuser's child is done
    # through munged's own PID file, then runuser exits by itself.
    stack.callback(_reap, proc)
    stack.callback(_stop_by_pid_file, pid_file)
    _wait(_munge_answers, 30, "munged", logs=[MUNGE_DIR / "munged.log"])


def _stop_by_pid_file(pid_file: Path) -> None:
    if pid_file.exists():
        text = pid_file.read_text().strip()
        if text.isdigit():
            _stop(int(text))


def _reap(proc: subprocess.Popen) -> None:
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        _stop(proc.pid)
        proc.wait()


def _start_daemon(stack: ExitStack, root: Path, name: str, env: dict[str, str]) -> None:
    """slurmctld or slurmd in the foreground (-D) as our child; stopped by PID on exit."""
    args = [_binary(name), "-D", "-f", str(root / "slurm.conf")]
    if name == "slurmctld":
        args.append("-c")  # clear state left by an earlier run
    out = open(root / f"{name}.stdout", "wb")
    proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    stack.callback(out.close)
    stack.callback(_reap_daemon, proc, name)


def _reap_daemon(proc: subprocess.Popen, name: str, timeout: float = 20) -> None:
    """SIGTERM our child daemon by PID, SIGKILL it after `timeout` s; reap it."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@contextmanager
def slurm_cluster(root: Path, startup_timeout: float = 60):
    """Start a single-node SLURM cluster under `root`; yield a `SlurmCluster`; stop it."""
    if os.geteuid() != 0:
        raise RuntimeError("starting munged as the munge user and slurmd needs root")
    missing = missing_binaries()
    if missing:
        raise RuntimeError(f"SLURM/munge binaries missing: {missing}; run `make debs`")
    root = Path(root).resolve()
    node, cpus, mem_mb = _node_resources()
    conf = _write_configs(root, node, cpus, mem_mb)
    cluster = SlurmCluster(root=root, conf=conf, node=node, cpus=cpus, mem_mb=mem_mb)
    env = cluster.env
    logs = [root / "slurmctld.log", root / "slurmd.log", root / "slurmctld.stdout", root / "slurmd.stdout"]
    with ExitStack() as stack:
        _start_munged(stack)
        _start_daemon(stack, root, "slurmctld", env)
        _wait(lambda: subprocess.run(["scontrol", "ping"], env=env, capture_output=True, text=True).stdout.count("UP") > 0,
              startup_timeout, "slurmctld", logs)
        _start_daemon(stack, root, "slurmd", env)

        def idle() -> bool:
            try:
                return cluster.node_state() == "idle"
            except subprocess.CalledProcessError:
                return False

        _wait(idle, startup_timeout, f"node {node} to be idle", logs)
        yield cluster
