import os

# No model hub here: every model is built from a config or loaded from a local folder.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(items):
    # Playwright's sync API keeps an asyncio loop running in the main thread for as long
    # as its session-scoped browser lives, which breaks every asyncio test collected after
    # it. So the browser tests run last (a stable sort keeps every other order).
    items.sort(key=lambda item: "browser" in item.keywords)
