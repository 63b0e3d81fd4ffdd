"""Emu: bring every live index generation up to date for the products a batch of messages names.

`worker` (the batch), `decisions` (what to do for one product: a pure function), `ledger` (what
each generation holds).
"""
