// PSDataTests: placeholder.
