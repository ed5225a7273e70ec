"""The embedded Atlas-compatible registry behind ``atlas-ci serve``."""
