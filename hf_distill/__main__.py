"""`python -m hf_distill compare ...`: see `hf_distill.cli`."""

from .cli import main

raise SystemExit(main())
