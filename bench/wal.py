"""WAL benchmark (not a test): `python bench/wal.py [--dir D]`.

Prints save throughput for batches of 1, 16 and 256 entries of 256 bytes
(fsync on: one fdatasync per batch) and the time to load 1,000,000 entries.
Run it on the filesystem the node will use (`--dir`): the numbers are mostly
the disk's fsync latency.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

from raftkv.raft.types import Entry, HardState
from raftkv.storage.wal import WriteAheadLog

PAYLOAD = 256


def bench_saves(root: str, batch: int, seconds: float, fsync: bool = True) -> tuple[float, float]:
    directory = tempfile.mkdtemp(prefix=f"wal-bench-{batch}-", dir=root)
    try:
        with WriteAheadLog(directory, fsync=fsync) as wal:
            wal.load()
            data = os.urandom(PAYLOAD)
            index = 1
            saves = 0
            start = time.perf_counter()
            deadline = start + seconds
            while time.perf_counter() < deadline:
                entries = [Entry(1, index + i, data=data) for i in range(batch)]
                wal.save(HardState(1, 1, index), entries)
                index += batch
                saves += 1
            elapsed = time.perf_counter() - start
        return saves * batch / elapsed, saves / elapsed
    finally:
        shutil.rmtree(directory)


def bench_load(root: str, count: int) -> tuple[float, float, int]:
    directory = tempfile.mkdtemp(prefix="wal-bench-load-", dir=root)
    try:
        data = os.urandom(PAYLOAD)
        start = time.perf_counter()
        with WriteAheadLog(directory) as wal:
            wal.load()
            for first in range(1, count + 1, 4096):
                last = min(first + 4096, count + 1)
                wal.save(None, [Entry(1, i, data=data) for i in range(first, last)])
        write_time = time.perf_counter() - start
        size = sum(os.path.getsize(os.path.join(directory, n)) for n in os.listdir(directory))
        start = time.perf_counter()
        with WriteAheadLog(directory) as wal:
            state = wal.load()
        load_time = time.perf_counter() - start
        assert len(state.entries) == count and state.entries[-1].index == count
        return write_time, load_time, size
    finally:
        shutil.rmtree(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="where to write (default: system temp dir)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per save benchmark")
    parser.add_argument("--load-entries", type=int, default=1_000_000)
    args = parser.parse_args()
    root = args.dir or tempfile.gettempdir()
    print(f"WAL benchmark in {root}, {PAYLOAD}-byte entries, fsync on")
    for batch in (1, 16, 256):
        entries_per_s, fsyncs_per_s = bench_saves(root, batch, args.seconds)
        print(
            f"  batch {batch:>3}: {entries_per_s:>10,.0f} entries/s  "
            f"{fsyncs_per_s:>8,.0f} saves(fsyncs)/s"
        )
    entries_per_s, _ = bench_saves(root, 256, args.seconds, fsync=False)
    print(
        f"  batch 256, fsync OFF (unsafe; the CPU cost of framing): {entries_per_s:,.0f} entries/s"
    )
    write_time, load_time, size = bench_load(root, args.load_entries)
    print(f"  write {args.load_entries:,} entries in batches of 4096: {write_time:.2f} s")
    print(f"  load  {args.load_entries:,} entries ({size / 2**20:.0f} MiB): {load_time:.2f} s")


if __name__ == "__main__":
    main()
