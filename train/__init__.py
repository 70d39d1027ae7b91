"""Entry points that produce weights and training data (thin: argument parsing around ``cityserve``)."""
