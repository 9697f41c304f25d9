"""scopeflow.client: see ../shared/ARCHITECTURE.md (filled in by later issues)."""
