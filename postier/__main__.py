"""`python -m postier` → the command line."""

from postier.cli.main import main

raise SystemExit(main())
