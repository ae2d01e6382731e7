"""Engine tests run offline: no model hub, so a Hub lookup fails at once instead of waiting on the network."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
