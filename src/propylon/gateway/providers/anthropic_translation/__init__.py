"""The one two-way translation between OpenAI chat completions and Anthropic's Messages API.

``requests``: request bodies, both ways. ``answers``: answers, stop reasons, usage and errors,
both ways. ``streams``: event streams, both ways. The
Anthropic provider uses the OpenAI -> Anthropic request and Anthropic -> OpenAI answer
directions; ``POST /v1/messages`` (``propylon.messages``) uses the other two, so a Messages
client can reach any deployment through the chat request path.
"""

from propylon.gateway.providers.anthropic_translation.answers import (
    anthropic_error,
    anthropic_message,
    anthropic_usage,
    chat_completion,
    finish_reason,
    openai_usage,
    stop_reason,
)
from propylon.gateway.providers.anthropic_translation.requests import (
    DEFAULT_MAX_TOKENS,
    RESPONSE_TOOL,
    UNSUPPORTED,
    chat_request,
    messages_request,
    response_format_tool,
    response_tool,
)
from propylon.gateway.providers.anthropic_translation.streams import (
    MessageEvents,
    completion_chunks,
    native_chunks,
)

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "RESPONSE_TOOL",
    "UNSUPPORTED",
    "MessageEvents",
    "anthropic_error",
    "anthropic_message",
    "anthropic_usage",
    "chat_completion",
    "chat_request",
    "completion_chunks",
    "finish_reason",
    "messages_request",
    "native_chunks",
    "openai_usage",
    "response_format_tool",
    "response_tool",
    "stop_reason",
]
