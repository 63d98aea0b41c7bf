"""The aiohttp edge: one route table per resource, auth, errors, rate limits, OpenAPI."""
