"""Credentials: password hashes, API keys, JWTs, and the user commands that record them."""
