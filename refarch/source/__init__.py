"""The synced table as configuration: its definition (`definition`) and its capture in Postgres (`capture`)."""

from refarch.source.definition import Column, Source, SourceError, load

__all__ = ["Column", "Source", "SourceError", "load"]
