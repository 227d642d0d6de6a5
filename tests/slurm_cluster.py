"""A real single-node SLURM cluster on localhost for the tests (Debian's slurm-wlm and munge).

munged, slurmctld and slurmd run in the foreground as children of the test, so they are stopped
by pid. munged is the test's own, on a private socket named in slurm.conf's AuthInfo: a machine's
/run/munge socket may be stale (left by a daemon that is gone), which a check for the socket file
cannot tell from a live one. The config must be /etc/slurm/slurm.conf (the executor plugin's job step drops
SLURM_CONF); an existing one is put back afterwards. Two fake GPUs are declared as gres with
``File=`` entries (character devices like /dev/null) so GPU requests are scheduled and honoured.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo")
CONF = Path("/etc/slurm/slurm.conf")
GRES = Path("/etc/slurm/gres.conf")


def unavailable_reason() -> str | None:
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        return f"SLURM/munge not installed ({', '.join(missing)} missing; apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "the SLURM test starts slurmctld/slurmd as root"
    return None


def _conf(host: str, state: Path, munge_socket: Path) -> str:
    return f"""ClusterName=diffcomp-test
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
StateSaveLocation={state}/state
SlurmdSpoolDir={state}/spool
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
MinJobAge=3600
MpiDefault=none
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory=16000 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@contextmanager
def slurm_cluster(state: Path):
    """Start a private munged, slurmctld and slurmd; yield the partition name."""
    host = socket.gethostname().split(".")[0]
    for d in ("state", "spool", "log"):
        (state / d).mkdir(parents=True, exist_ok=True)
    # A short directory: a unix socket's path is limited to 107 bytes, pytest's tmp paths are long.
    munge_dir = Path(tempfile.mkdtemp(prefix="diffcomp-munge-"))
    munge_dir.chmod(0o755)
    munge_socket = munge_dir / "socket"
    backups = {}
    for path, text in ((CONF, _conf(host, state, munge_socket)),
                       (GRES, f"NodeName={host} Name=gpu File=/dev/diffcomp-fakegpu[0-1]\n")):
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            backups[path] = path.read_text()
        path.write_text(text)
    devices = [Path(f"/dev/diffcomp-fakegpu{i}") for i in range(2)]
    for dev in devices:
        if not dev.exists():
            os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 3))  # a character device like /dev/null
    procs: list[subprocess.Popen] = []
    logs = []
    try:
        if not Path("/etc/munge/munge.key").exists():
            subprocess.run(["mungekey", "--create"], check=True)
        log = open(state / "log" / "munged.log", "w")
        logs.append(log)
        procs.append(subprocess.Popen(
            ["munged", "--foreground", "--force", "-S", str(munge_socket),
             "--pid-file", str(munge_dir / "pid"), "--seed-file", str(munge_dir / "seed"),
             "--log-file", str(state / "log" / "munged-file.log")],
            stdout=log, stderr=subprocess.STDOUT))
        _wait(lambda: subprocess.run(["munge", "-n", "-S", str(munge_socket)], capture_output=True).returncode == 0,
              "munged to answer", dead=procs, logs=state / "log")
        for name in ("slurmctld", "slurmd"):
            log = open(state / "log" / f"{name}.log", "w")
            logs.append(log)
            procs.append(subprocess.Popen([name, "-D", "-f", str(CONF)], stdout=log, stderr=subprocess.STDOUT))
            time.sleep(1)
        _wait(lambda: "idle" in subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True).stdout,
              "an idle SLURM node", dead=procs, logs=state / "log")
        yield "debug"
    finally:
        for p in reversed(procs):
            _stop(p)
        for f in logs:
            f.close()
        for path in (CONF, GRES):
            if path in backups:
                path.write_text(backups[path])
            elif path.exists():
                path.unlink()
        for dev in devices:
            dev.unlink(missing_ok=True)
        shutil.rmtree(munge_dir, ignore_errors=True)


def _wait(cond, what: str, timeout: float = 60, dead=(), logs: Path | None = None) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return
        if any(p.poll() is not None for p in dead):
            break
        time.sleep(0.5)
    detail = ""
    if logs is not None:
        detail = "\n".join(f"--- {f.name}\n{f.read_text()[-2000:]}" for f in sorted(logs.glob("*.log")))
    raise RuntimeError(f"timed out waiting for {what}\n{detail}")
