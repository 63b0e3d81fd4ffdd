"""`python -m refarch_local.standins {openai|pinecone} ...`."""

from refarch_local.standins import main

main()
