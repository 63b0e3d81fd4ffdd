"""The architecture picture (docs/architecture.svg), generated from the CDK app: `make docs`.

`graph` reads a synthesized app into nodes and edges; `svg` draws them. A dev tool: it imports the
CDK app and never ships with the runtime.
"""
