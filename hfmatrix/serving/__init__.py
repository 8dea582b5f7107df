"""Serving: a real OpenAI-compatible server process, its HTTP client, a fault-injecting proxy, load figures."""
