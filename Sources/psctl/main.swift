// psctl: executable placeholder.
print("psctl: not yet implemented")
