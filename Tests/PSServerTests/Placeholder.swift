// PSServerTests: placeholder.
