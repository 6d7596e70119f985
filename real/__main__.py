"""``python -m real``: one rank under torchrun or srun, or ``--nproc`` local processes
(see :mod:`real.cli`)."""

from real.cli import main

main()
