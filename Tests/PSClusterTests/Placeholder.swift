// PSClusterTests: placeholder.
