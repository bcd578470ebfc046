// PSTransportTests: placeholder.
