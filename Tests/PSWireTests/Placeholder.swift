// PSWireTests: placeholder.
