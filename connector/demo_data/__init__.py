"""What `gameball-connector demo` needs once installed: copies of config/demo.yaml and of
the examples' records.jsonl (config/examples/<name>/records.jsonl -> <name>.jsonl).

config/ is what users read and edit; this package is the installed demo's copy, read with
importlib.resources. tests/unit/test_demo_data.py keeps the two byte-for-byte equal.
"""
