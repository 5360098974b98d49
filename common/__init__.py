"""seasync common pieces: protocol, codec, versions, patterns, JSON Patch, the Python client."""
