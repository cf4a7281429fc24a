#!/bin/sh
# The job of README.md's `raftkv lock acquire jobs -- ./run-job.sh`: it runs while the
# lock is held, with the lock's fencing token in $RAFTKV_LOCK_TOKEN.
echo "run-job.sh: running under lock $RAFTKV_LOCK_NAME with fencing token $RAFTKV_LOCK_TOKEN"
