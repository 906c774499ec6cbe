"""Developer and CI checks run by the Makefile (not deployed, not part of the sandbox)."""
