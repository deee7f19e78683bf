"""`python -m lsr`: the `lsr` command."""

from lsr.cli import main

raise SystemExit(main())
