"""The conversations a chat template's derived pieces are checked on (``app.chat``), also written to golden.json
for the apps' own tests."""

from __future__ import annotations

# Conversations the derived pieces must reproduce exactly (also written to golden.json for the apps' tests).
CHECK_CONVERSATIONS = (
    ((("user", "Hi there"),), True),
    ((("user", "What is 2+2?"), ("assistant", "4."), ("user", "And 3+3?")), True),
    ((("system", "You are terse."), ("user", "Name a colour."), ("assistant", "Red."), ("user", "Another?")), True),
    ((("user", "Say café, 中文 and 🙂"),), False),
    ((("user", "Hello"), ("assistant", "Hi! How can I help?")), False),
    ((("user", "  spaced out  "),), True),
)

def messages(conversation) -> list[dict]:
    return [{"role": r, "content": c} for r, c in conversation]
