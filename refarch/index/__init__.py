"""Vector indexes: the port (`port`), its adapters (`pgvector_index`, `pinecone_index`), Pinecone's
control plane (`pinecone_indexes`), the one place that picks an adapter (`factory`), and the id
shards every index can read on its own (`id_shards`)."""
