"""EventBridge targets receive the whole event, as in AWS, and SNS topics are targets.

moto 5.2.5 delivers events to targets through a default input template that leaves out
the ``account`` field; real EventBridge delivers the event unchanged. The pipeline's
trigger matches a pushed image to a release by account, region and repository, so the
sandbox restores the field.

moto 5.2.5 also cannot deliver to an SNS topic: a rule with one raises NotImplementedError
inside PutEvents, which the caller sees as a 500. The stack's rules notify its topic (e.g.
"Release Waiting" messages), so the sandbox publishes to the topic as EventBridge does: the
target's transformed input (or the whole event) as the message.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any
from unittest.mock import patch

from moto.events.models import Rule
from moto.events.utils import EventTemplateParser
from moto.sns.models import sns_backends
from moto.utilities.arns import parse_arn

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
        stack.enter_context(patch.object(Rule, "send_to_targets", _with_sns_targets(Rule.send_to_targets)))


def targets_of_our_own(
    original: Callable[..., Any],
    takes: Callable[[Rule, dict[str, Any]], bool],
    deliver: Callable[[Rule, dict[str, Any], dict[str, Any]], None],
) -> Callable[..., Any]:
    """A ``Rule.send_to_targets`` that hands the targets ``takes`` picks to ``deliver`` (when the
    rule matches the event) and leaves every other target to moto's ``original``."""

    def send(rule: Rule, event: dict[str, Any], transform_input: bool = True) -> None:
        ours = [target for target in rule.targets if takes(rule, target)]
        if not ours:
            original(rule, event, transform_input)
            return
        rest = [target for target in rule.targets if target not in ours]
        if rest:
            local = copy.copy(rule)
            local.targets = rest
            original(local, event, transform_input)
        if not rule.event_pattern.matches_event(event):  # type: ignore[arg-type]
            return
        for target in ours:
            deliver(rule, target, event)

    return send


def _with_sns_targets(original: Callable[..., Any]) -> Callable[..., Any]:
    return targets_of_our_own(original, lambda rule, target: parse_arn(target["Arn"]).service == "sns", _publish)


def _publish(rule: Rule, target: dict[str, Any], event: dict[str, Any]) -> None:
    """What EventBridge sends an SNS topic: the target's transformed input, or the whole event."""
    transformer = target.get("InputTransformer", {})
    message = EventTemplateParser.parse(
        input_template=transformer.get("InputTemplate"),
        input_paths_map=transformer.get("InputPathsMap", {}),
        event=event,  # type: ignore[arg-type]
    )
    arn = parse_arn(target["Arn"])
    body = message if isinstance(message, str) else json.dumps(message)
    sns_backends[arn.account][arn.region].publish(body, arn=target["Arn"])
