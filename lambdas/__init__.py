"""Thin Lambda handlers: parse the event, call `refarch`, shape the response."""
