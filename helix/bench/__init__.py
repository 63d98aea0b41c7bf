"""`helix bench`: Helix measured beside raw PostgreSQL on the same server in the same run."""
