"""BuildAnnouncement: the SNS message and EventBridge detail for a finished release."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlpublish.announce import SuccessState, failed, ready
from mlpublish.state import AnnouncementInput

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = AnnouncementInput.model_validate(event)
    state = {**request.state, "execution": request.execution}
    announcement = ready(SuccessState.model_validate(state)) if request.outcome == "ready" else failed(state)
    logger.info("announcement", extra={"outcome": announcement.outcome, "subject": announcement.subject})
    return announcement.model_dump(mode="json")
