"""atlas-ci: upload Packer artifacts to an Atlas-compatible registry."""

__version__ = "0.1.0"
USER_AGENT = f"atlas-ci/{__version__}"
