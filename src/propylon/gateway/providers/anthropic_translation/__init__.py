"""The one two-way translation between OpenAI chat completions and Anthropic's Messages API.

``bodies``: requests and answers, both ways. ``streams``: event streams, both ways. The
Anthropic provider uses the OpenAI -> Anthropic request and Anthropic -> OpenAI answer
directions; ``POST /v1/messages`` (``propylon.messages``) uses the other two, so a Messages
client can reach any deployment through the chat request path.
"""

from propylon.gateway.providers.anthropic_translation.bodies import (
    DEFAULT_MAX_TOKENS,
    anthropic_error,
    anthropic_message,
    anthropic_usage,
    chat_completion,
    chat_request,
    finish_reason,
    messages_request,
    openai_usage,
    stop_reason,
)
from propylon.gateway.providers.anthropic_translation.streams import (
    MessageEvents,
    completion_chunks,
)

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "MessageEvents",
    "anthropic_error",
    "anthropic_message",
    "anthropic_usage",
    "chat_completion",
    "chat_request",
    "completion_chunks",
    "finish_reason",
    "messages_request",
    "openai_usage",
    "stop_reason",
]
