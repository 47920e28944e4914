"""`python -m edgelstm.convert.layers`: print the README's table of supported layers."""

from edgelstm.convert.layers import support_table

print(support_table(), end="")
