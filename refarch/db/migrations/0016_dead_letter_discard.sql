-- Discarding a dead letter (refarch/lanes/dead_letters.py) marks the products it leaves unindexed failed,
-- with the reason, so their status says why they are not indexed. It runs in the web task (the page's dead
-- letters for editors, `refarch dlq discard` run there), so the web role may record a failure in the ledger:
-- the status, the reason and the attempt count, never an indexed version or a content hash (Emu's alone).
GRANT INSERT (generation, product_id, status, last_error, attempts, updated_at),
      UPDATE (status, last_error, attempts, updated_at)
   ON sync_state TO refarch_web;
