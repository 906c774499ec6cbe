"""SQS event source mappings poll in the background, as Lambda's pollers do.

moto 5.2.5 invokes a queue's mapped function synchronously inside ``Queue.add_message``: the
caller of SendMessage (or the EventBridge rule, or the S3 or ECR call that raised the event)
waits for the function to finish. On AWS a poller picks the message up later, apart from the
sender. The difference matters: a Lambda whose ECR push raises an event the trigger consumes
would otherwise wait for the trigger inside its own call (and, under a concurrency limit,
for a slot it holds itself).

This extension takes the mappings out of ``add_message`` and delivers each queue's messages
from one background thread, with moto's own batch, delete and visibility logic. ``wait_idle``
lets the sandbox wait until every message sent so far has been delivered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from contextlib import ExitStack
from typing import Any
from unittest.mock import patch

from moto.sqs.models import Queue, sqs_backends

from sandbox.extension import Extension

logger = logging.getLogger(__name__)
#: Real seconds between polls of a queue whose last batch failed.
RETRY_SECONDS = 0.2


class EventSourcePoller(Extension):
    """Deliver SQS messages to mapped functions from a poller thread."""

    def __init__(self) -> None:
        self._pending: deque[tuple[Queue, dict[str, Any]]] = deque()
        self._busy = 0
        self._condition = threading.Condition()
        self._swap = threading.Lock()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def _patch(self, stack: ExitStack) -> None:
        original = Queue.add_message
        poller = self

        def add_message(queue: Queue, message: Any) -> None:
            with poller._swap:  # the mappings are hidden from moto's inline delivery
                mappings = queue.lambda_event_source_mappings
                queue.lambda_event_source_mappings = {}
                try:
                    original(queue, message)
                finally:
                    queue.lambda_event_source_mappings = mappings
            if any(mapping.enabled for mapping in mappings.values()):
                # Delivered with the mappings as they were now: the poller must not read the
                # queue's own attribute, which is empty while another message is being added.
                poller._schedule(queue, dict(mappings))

        stack.enter_context(patch.object(Queue, "add_message", add_message))
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="sandbox-sqs-poller", daemon=True)
        self._thread.start()
        stack.callback(self._stop)

    def wait_idle(self, timeout: float = 600.0) -> None:
        """Return once every message sent so far has been handed to its function and handled."""
        with self._condition:
            if not self._condition.wait_for(lambda: not self._pending and not self._busy, timeout):
                raise TimeoutError(f"SQS event source mappings still busy after {timeout} s")

    def busy(self) -> bool:
        """Whether messages wait for delivery or a function is handling some now."""
        with self._condition:
            return bool(self._pending or self._busy)

    def _schedule(self, queue: Queue, mappings: dict[str, Any]) -> None:
        with self._condition:
            self._pending.append((queue, mappings))
            self._condition.notify_all()

    def _stop(self) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._pending or self._stopping)
                if self._stopping:
                    return
                queue, mappings = self._pending.popleft()
                self._busy += 1
            try:
                if not _deliver(queue, mappings):
                    # A failed batch is visible again: poll once more, as Lambda's poller does,
                    # until it is handled or the queue's redrive policy moves it to the DLQ.
                    time.sleep(RETRY_SECONDS)
                    with self._condition:
                        self._pending.append((queue, mappings))
            except Exception:  # a delivery that fails must not stop the poller for every later message
                logger.exception("SQS event source mapping delivery failed for %s", queue.name)
            finally:
                with self._condition:
                    self._busy -= 1
                    self._condition.notify_all()


def _deliver(queue: Queue, mappings: dict[str, Any]) -> bool:
    """One poll of each enabled mapping, as moto's ``add_message`` does it inline; False when
    a batch failed and went back to the queue."""
    from moto.awslambda.utils import get_backend

    backend = sqs_backends[queue.account_id][queue.region]
    handled = True
    for arn, mapping in mappings.items():
        if not mapping.enabled:
            continue
        messages = backend.receive_message(
            queue.name,
            mapping.batch_size,
            0,
            queue.visibility_timeout,  # type: ignore[attr-defined]
        )
        if not messages:
            continue
        delivered = get_backend(queue.account_id, queue.region).send_sqs_batch(arn, messages, queue.queue_arn)
        for message in messages:
            if delivered:
                backend.delete_message(queue.name, message.receipt_handle)  # type: ignore[arg-type]
            else:  # visible again, for the next poll
                handled = False
                backend.change_message_visibility(
                    queue.name,
                    message.receipt_handle,  # type: ignore[arg-type]
                    visibility_timeout=0,
                )
    return handled
