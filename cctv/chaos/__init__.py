"""Fault runs with end-to-end accounting (`make chaos`) and the long soak (`make soak`)."""
