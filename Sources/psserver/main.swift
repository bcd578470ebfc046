// psserver: executable placeholder.
print("psserver: not yet implemented")
