"""scopeflow.ops.spim: see ../shared/ARCHITECTURE.md (filled in by later issues)."""
