// PSCheckpointTests: placeholder.
