// PSCLITests: placeholder.
