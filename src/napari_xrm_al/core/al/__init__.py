"""Active learning: acquisition strategies, picking a batch of slices, ranking a session's slices, simulation with an oracle and its learning curves."""
