"""fnl: B2B email funnels as code."""

__version__ = "0.1.0"
