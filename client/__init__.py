"""Python client for a benchboard server. Imports only httpx and websockets."""
