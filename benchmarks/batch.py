"""Archive jobs (``emovox batch``): the local engine against Ray on one machine, a killed driver, memory.

Usage::

    python benchmarks/batch.py [--files 2000] [--seconds 1.0] [--model RUN_DIR] [--workers 2]

Writes ``--files`` tone clips (16 kHz WAV, ``--seconds`` long) to a temporary folder (never
to the repository), then runs the same ``emovox batch`` command as a child process with
``--engine local`` and with ``--engine ray`` (a local Ray cluster started by the command,
``--workers`` actors): wall time of the whole command (start-up, Ray's included) and files
per second, and whether both wrote the same rows (bit for bit, and the largest score
difference). Then the Ray command again, SIGKILLed once half the files are in committed
parts, and the same command once more: every file once, the dataset identical to the
uninterrupted run, and how long the processes of the killed job outlived it (Ray's
dashboard and runtime-env agents watch their raylet and exit within about a minute). Memory: the
resident set (RSS) of the local command and of each Ray worker actor, sampled every 0.5 s,
once a quarter of the files are in parts and at the end (flat: no growth with the number of files).
``--model`` defaults to the bundled model.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from emovox import batch

SR = 16000
SAMPLE_S = 0.5
ORPHAN_WAIT_S = 120  # the benchmark kills what a killed driver left running after this long
PART_FILES = 100  # parts of 100 files: the count of files done (in parts) moves in small steps


def make_clips(root: Path, n: int, seconds: float) -> None:
    """``n`` harmonic tones of varied pitch, loudness and vibrato, with a little noise."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SR)) / SR
    for i in range(n):
        f0 = rng.uniform(90, 320) * (1 + 0.04 * np.sin(2 * np.pi * rng.uniform(3, 7) * t))
        phase = 2 * np.pi * np.cumsum(f0) / SR
        y = sum(np.sin(k * phase) / k for k in range(1, 6)) * rng.uniform(0.05, 0.3)
        y += 0.003 * rng.standard_normal(len(t))
        sf.write(root / f"clip{i:05d}.wav", y.astype(np.float32), SR)


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
    found, grew = {pid}, True
    while grew:
        new = {p for p, pp in parents.items() if pp in found} - found
        found |= new
        grew = bool(new)
    return found - {pid}


def running(pid: int) -> bool:
    """Alive and not a zombie (an exited process its parent has not reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def is_worker(pid: int) -> bool:
    try:
        return b"MapWorker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def command(src: Path, out: Path, engine: str, model: str | None, workers: int) -> list[str]:
    cmd = [sys.executable, "-m", "emovox", "batch", str(src), "--out", str(out), "--engine", engine,
           "--workers", str(workers), "--part-files", str(PART_FILES), "--quiet"]
    return cmd + (["--model", model] if model else [])


def run(cmd: list[str], *, out: Path, kill_at: int | None = None) -> dict:
    """Run ``cmd`` writing to ``out``, sampling RSS (the command, each Ray actor) against the
    files in parts; with ``kill_at``, SIGKILL it once ``out`` holds that many files."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    samples: dict[int, list[tuple[int, float]]] = {}  # pid: [(files in parts, RSS MB)]
    seen: set[int] = set()
    killed = False
    while proc.poll() is None:
        kids = descendants(proc.pid)
        seen |= kids
        done = len(batch.committed_paths(out))
        for pid in [proc.pid] + [p for p in kids if is_worker(p)]:
            mb = rss_mb(pid)
            if mb is not None:
                samples.setdefault(pid, []).append((done, mb))
        if kill_at is not None and done >= kill_at:
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(SAMPLE_S)
    proc.wait()
    wall = time.perf_counter() - start
    if not killed and proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.read().decode()[-3000:]}")
    gone, left = None, []
    if killed:  # how long the killed driver's processes outlive it (killed after ORPHAN_WAIT_S)
        end = time.perf_counter()
        while (left := [p for p in seen if running(p)]) and time.perf_counter() - end < ORPHAN_WAIT_S:
            time.sleep(1.0)
        gone = time.perf_counter() - end
        for p in left:
            os.kill(p, signal.SIGKILL)
    return {"wall": wall, "samples": samples, "driver": proc.pid, "gone": gone, "left": left}


def memory(result: dict, engine: str, n: int) -> list[str]:
    """RSS once a quarter of the files are in parts and at the end of the job, per process
    (the command, and each Ray actor)."""
    rows = []
    for pid, series in result["samples"].items():
        after = [mb for done, mb in series if done >= n // 4]
        if len(after) < 2:
            continue
        quarter, end = after[0], series[-1][1]
        who = f"{engine} command" if pid == result["driver"] else f"ray actor {pid}"
        rows.append(f"| {who} | {quarter:.0f} | {end:.0f} | {end - quarter:+.0f} | {max(mb for _, mb in series):.0f} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--model", default=None)
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "clips"
        src.mkdir()
        make_clips(src, args.files, args.seconds)
        n = args.files
        print(f"{n} clips of {args.seconds} s, model {args.model or 'bundled'}, {args.workers} workers, "
              f"{os.cpu_count()} CPUs\n")
        results = {e: run(command(src, tmp / e, e, args.model, args.workers), out=tmp / e) for e in ("local", "ray")}
        local, ray = batch.read(tmp / "local"), batch.read(tmp / "ray")
        print("| engine | wall (s, start-up included) | files/s | vs local |\n|---|---|---|---|")
        for e in ("local", "ray"):
            wall = results[e]["wall"]
            print(f"| {e} | {wall:.1f} | {n / wall:.1f} | {results['local']['wall'] / wall:.2f} |")
        cols = [c for c in local.column_names if c.startswith("score_")]
        diff = max(float(np.nanmax(np.abs(local[c].to_numpy(zero_copy_only=False).astype(float)
                                          - ray[c].to_numpy(zero_copy_only=False).astype(float)))) for c in cols)
        print(f"\nsame rows, local and ray: {local.equals(ray)} (largest score difference {diff:.1e}; "
              f"{local.num_rows} rows)")

        out = tmp / "killed"
        cmd = command(src, out, "ray", args.model, args.workers)
        first = run(cmd, kill_at=n // 2, out=out)
        kept = len(batch.committed_paths(out))
        second = run(cmd, out=out)
        final = batch.read(out)
        paths = final["path"].to_pylist()
        print(f"\ndriver SIGKILLed after {first['wall']:.1f} s with {kept} of {n} files in parts; its processes "
              f"gone {first['gone']:.0f} s later ({len(first['left'])} left after {ORPHAN_WAIT_S} s); "
              f"rerun {second['wall']:.1f} s")
        print(f"after the rerun: {len(paths)} rows, {len(set(paths))} files, each once: "
              f"{len(paths) == len(set(paths))}; identical to the uninterrupted run: {final.equals(ray)}")

        print("\n| process | RSS at 1/4 of the files (MB) | at the end (MB) | growth (MB) | peak (MB) |")
        print("|---|---|---|---|---|")
        for e in ("local", "ray"):
            print("\n".join(memory(results[e], e, n)))


if __name__ == "__main__":
    main()
