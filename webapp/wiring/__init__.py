"""The wiring: settings, the services a server or CLI run holds, and the adapters and event
fan-out that connect the engine to storage and Channels."""
