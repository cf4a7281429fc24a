"""Exec a pod's command with PR_SET_PDEATHSIG set, so no container process outlives the test
process (even if it is killed with SIGKILL and never runs its cleanup).

Usage: python -S launcher.py <parent pid> <executable> [argv...]
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main() -> None:
    parent = int(sys.argv[1])
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(137)
    executable, argv = sys.argv[2], sys.argv[3:]
    try:
        os.execv(executable, argv)
    except OSError as e:
        print(f"emulated kubelet: cannot exec {executable}: {e}", file=sys.stderr, flush=True)
        os._exit(127)


if __name__ == "__main__":
    main()
