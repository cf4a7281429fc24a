"""Apply throughput and snapshot cost of the state machine (a benchmark, not a test).

    .venv/bin/python bench/fsm_apply.py [--puts 200000] [--snapshot-keys 1000000]

Times are CPU seconds of this process (the machine is shared; wall clock
would measure the neighbours). Prints puts/s for new keys, overwrites and session-tagged puts (entries are
encoded beforehand: this measures decode + apply, what a follower pays per
committed entry), then the time to snapshot and restore a store of
--snapshot-keys keys with 256-byte values.
"""

from __future__ import annotations

import argparse
import time

from raftkv.fsm import Put, Session, StateMachine, encode


def _rate(label: str, machine: StateMachine, entries: list[bytes]) -> None:
    apply = machine.apply
    index = machine.applied_index
    cpu = time.process_time()
    for data in entries:
        index += 1
        apply(index, 1, data)
    elapsed = time.process_time() - cpu
    per_put = elapsed / len(entries) * 1e6
    print(f"{label:<22} {len(entries) / elapsed:>10,.0f} puts/s  ({per_put:.2f} us/put)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--puts", type=int, default=200_000)
    parser.add_argument("--snapshot-keys", type=int, default=1_000_000)
    args = parser.parse_args()

    value = b"v" * 256
    machine = StateMachine()
    fresh = [encode(Put(b"key/%010d" % i, value)) for i in range(args.puts)]
    _rate("put, new keys", machine, fresh)
    _rate("put, overwrites", machine, fresh)
    tagged = [
        encode(Put(b"key/%010d" % i, value), Session(f"client-{i % 64}", i))
        for i in range(args.puts)
    ]
    _rate("put with a session", machine, tagged)

    if args.snapshot_keys:
        big = StateMachine()
        batch = [
            encode(Put(b"big/%010d" % (i * 7919 % args.snapshot_keys), value))
            for i in range(args.snapshot_keys)
        ]
        _rate(f"load {args.snapshot_keys:,} keys", big, batch)
        del batch
        cpu = time.process_time()
        data = big.snapshot_bytes()
        taken = time.process_time() - cpu
        print(f"snapshot_bytes         {taken:.2f} s  ({len(data) / 1e6:,.0f} MB)")
        restored = StateMachine()
        cpu = time.process_time()
        restored.restore(data)
        print(f"restore                {time.process_time() - cpu:.2f} s")
        assert restored.stats() == big.stats()


if __name__ == "__main__":
    main()
