"""Everything SQL: the connection, the repository, the schema and its migrations."""
