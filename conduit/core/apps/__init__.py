"""App runners: what a run of each app kind does (`core/runs/kinds.py` has the interface).

`chat.ChatRunner` serves chat, agent-chat and completion apps; workflow and chatflow runners
register beside it in `conduit/bootstrap.py`.
"""

from conduit.core.apps.chat import ChatResult, ChatRunBody, ChatRunner, ChatStore

__all__ = ["ChatResult", "ChatRunBody", "ChatRunner", "ChatStore"]
