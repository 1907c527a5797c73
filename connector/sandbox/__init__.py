"""A local, strict, Gameball-compatible API for demos and tests. NOT Gameball.

`server.SandboxServer` (in process), `command` (`gameball-connector sandbox`,
`python -m connector.sandbox`), `faults.Faults`. See docs/sandbox.md.
"""
