"""paasport: a declarative platform-as-a-service for Docker services, in the spirit of PaaSTA."""

__version__ = "0.1.0"
