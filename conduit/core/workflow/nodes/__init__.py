"""The node functions, one module per family; `registry.NODES` maps DSL node types to them."""
