// psbench: executable placeholder.
print("psbench: not yet implemented")
