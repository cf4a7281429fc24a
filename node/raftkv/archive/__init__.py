"""Checkpoint copies off the cluster: an S3-compatible bucket (`raftkv archive ...`)."""
