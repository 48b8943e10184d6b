"""The commands of `vast-launch`, grouped by what they do; `cli.py` registers them."""
