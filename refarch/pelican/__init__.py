"""Pelican: moves database changes onto the queue (outbox relay + bootstrap fan-out)."""
