"""`doppel load-dump`: reading a pg_dump of a faces table without running any of it."""
