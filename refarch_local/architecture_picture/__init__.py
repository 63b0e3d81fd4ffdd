"""The architecture picture (docs/architecture.svg), generated from the CDK app: `make docs`.

`synthesized_app` reads a synth's templates back, `graph` turns them into nodes and edges,
`layout` places them (in the look `picture_style` sets) and `svg` draws them; `synth` runs it all
on a stage. A dev tool: it imports the CDK app and never ships with the runtime.
"""
