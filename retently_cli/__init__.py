"""retently-cli: replay Segment Track events into Retently transactional surveys."""

__version__ = "0.1.0"
