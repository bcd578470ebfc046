// PSMathTests: placeholder.
