"""The workflow engine: Dify DSL graphs run on asyncio (graph, variables, planner, nodes)."""
