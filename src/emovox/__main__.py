"""``python -m emovox`` (and ``torchrun -m emovox``) runs the command line."""

from emovox.cli import app

app()
