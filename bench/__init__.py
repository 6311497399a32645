"""`make bench`: every pipeline stage measured against the bare limit of the same work, on the same input."""
