"""cityserve: street-scene label maps to photorealistic images, served at production speed."""

__version__ = "0.1.0"
