"""`doppel resemble`: whom a face resembles, how surely, and the report."""
