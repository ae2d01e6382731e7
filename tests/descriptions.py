"""Model and hardware descriptions as the registry and detection give them, for test rows."""

CPU = {"name": "cpu", "type": "cpu", "device": "Test CPU"}


def model_description(name: str, family: str, **overrides) -> dict:
    return {
        "name": name,
        "family": family,
        "type": "encoder",
        "modality": "text",
        "parameters_million": 1.0,
        "source": "builtin",
    } | overrides
