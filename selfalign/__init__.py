"""selfalign: SELF-ALIGN (Sun et al. 2023) as a data-versioned pipeline."""

__version__ = "0.1.0"
