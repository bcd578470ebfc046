// psworker: executable placeholder.
print("psworker: not yet implemented")
