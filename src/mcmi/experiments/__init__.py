"""One module per experiment of the paper: expand a config into runs, run them, write results."""
