"""CDK app and delivery scripts for the water-quality model service (DESIGN.md §6)."""
