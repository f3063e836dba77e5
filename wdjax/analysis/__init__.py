"""Analysis on the host: intervals and tests (stats), per-setting tables and selection,
figures, and the exact symmetry maps the studies test."""
