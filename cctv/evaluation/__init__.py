"""`cctv eval`: the production cores run offline over annotated clips, scored the way KISA scores."""
