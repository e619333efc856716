"""Tools an agent may call: what each takes (its parameters, as the model and the app fill
them) and what it answers. `builtin.py` holds the tools served without any configuration
(Dify's built-in `time` and `maths` providers, under Dify's names, so that an exported
agent app keeps its tools)."""
