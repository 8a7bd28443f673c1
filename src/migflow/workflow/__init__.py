"""Workflow files: loading with positions, schema validation, matrix expansion."""
