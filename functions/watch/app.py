"""Watch: the first step of an event-driven wait (a ``.waitForTaskToken`` task).

Keeps the task token under the resource AWS's events name, makes sure those events reach the
stack's region, then looks at the resource once: one that has ended already (a re-run, or an
event that came before the token was stored) ends the wait at once. See mlpublish.waits.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlpublish.aws import TRACED_MODULES, client
from mlpublish.waits import WaitSettings, Watch, finish, forwarding_rule, look, store

logger = Logger()
tracer = Tracer(patch_modules=TRACED_MODULES)
config = WaitSettings.model_validate(os.environ)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    token = str(event["task_token"])
    watch = Watch.model_validate(event)
    if watch.region != config.region:
        forwarding_rule(
            client("events", watch.region),
            name=config.forwarding_rule,
            stack_region=config.region,
            account=context.invoked_function_arn.split(":")[4],
            role_arn=config.forwarding_role_arn,
        )
    dynamodb = client("dynamodb", config.region)
    store(dynamodb, config.table, token, watch)
    outcome = look(watch, client)
    if outcome is not None:
        finish(client("stepfunctions", config.region), dynamodb, config.table, watch.resource, token, outcome)
    logger.info("waiting" if outcome is None else "ended at once", extra={"resource": watch.resource})
    # The task reads SendTask*'s outcome, not this; it is here for the logs and for tests.
    return {"resource": watch.resource, "outcome": None if outcome is None else outcome.model_dump()}
