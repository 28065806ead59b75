"""The `oimon` subcommands: each module has register(sub) and its cmd_* functions, thin over the
host library (the oimon package's other modules). Nothing outside this package imports it but
oimon.cli; the simulator never does (docs/architecture.md)."""
