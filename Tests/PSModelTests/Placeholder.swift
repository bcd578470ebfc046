// PSModelTests: placeholder.
