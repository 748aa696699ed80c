"""bench/crowd.py's parts: the nodes it starts, the figures and checks, the plot."""
