"""scopeflow.ops.cyto: see ../shared/ARCHITECTURE.md (filled in by later issues)."""
