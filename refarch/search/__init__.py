"""Search: the service (`service`: hybrid, semantic or lexical), full-text ranking (`lexical`),
rank fusion (`fusion`) and cached query vectors (`query_embeddings`)."""
