"""Clip writer: evidence clips of incidents in S3-compatible object storage."""
