"""`python -m generalist` (and `torchrun -m generalist`) runs the CLI."""

from generalist.cli import main

raise SystemExit(main())
