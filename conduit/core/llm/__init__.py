"""Model providers behind one interface (`provider.ChatModel`): OpenAI-compatible endpoints over
aiohttp, and an embedded local model (llama.cpp); typed errors, a circuit breaker, usage prices.

Modules are imported where used: `local` loads llama_cpp lazily and `openai_compatible` pulls in
aiohttp, so importing this package stays cheap.
"""
