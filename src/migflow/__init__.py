"""migflow: reproducible live-migration experiments.

A workflow (TOML) names steps that plugins provide; the engine runs every
scenario x repetition against real hypervisor hosts and records every run,
failed ones included, in a DuckDB file.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
