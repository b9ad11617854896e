"""The Slurm lab (see ``python3 -m tests.lab --help``) and what tests need to use it."""
