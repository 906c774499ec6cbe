"""EventBridge targets receive the whole event, as in AWS.

moto 5.2.5 delivers events to targets through a default input template that leaves out
the ``account`` field; real EventBridge delivers the event unchanged. The pipeline's
trigger matches a pushed image to a release by account, region and repository, so the
sandbox restores the field.
"""

from __future__ import annotations

from contextlib import ExitStack
from unittest.mock import patch

from moto.events.utils import EventTemplateParser

from sandbox.extension import Extension

FULL_EVENT_TEMPLATE = (
    '{"id": "<id>", "time": <time>, "version": "0", "detail-type": "<detail-type>", "source": "<source>", '
    '"account": "<account>", "region": "<region>", "resources": <resources>, "detail": <detail>}'
)


class WholeEventTargets(Extension):
    """Targets without an input template get the whole event (``account`` included).

    Install with ``undo = ext.install()`` (or ``with ext:``); ``undo()`` restores moto.
    """

    def _patch(self, stack: ExitStack) -> None:
        """Patch the default target template."""
        stack.enter_context(patch.object(EventTemplateParser, "DEFAULT_EVENT_INPUT_TEMPLATE", FULL_EVENT_TEMPLATE))
