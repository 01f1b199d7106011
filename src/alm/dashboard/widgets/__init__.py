"""Dashboard widgets; each renders one aspect of a run's state and knows nothing of processes or files."""
