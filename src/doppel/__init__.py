"""doppel: face look-alike search on PostgreSQL + pgvector, and face resemblance."""

__version__ = "0.1.0"
