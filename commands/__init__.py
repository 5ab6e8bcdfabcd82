"""The entry points: the `lifeboat` command, the demo and the break-glass path.

They sit above everything else: they may import flows, tasks, the core (`lifeboat/`) and
the lab; nothing imports them (the import contracts in pyproject.toml say so).
"""
