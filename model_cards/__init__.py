"""Model- and dataset-card templates and the code that fills them from a run."""
