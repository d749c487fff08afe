"""Stats: access logs into stats.db, explored with Datasette."""
