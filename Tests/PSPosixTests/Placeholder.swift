// PSPosixTests: placeholder.
