"""share-gateway: the public video edge that plays time-limited live shares (HLS) to agencies."""
