"""The local AWS: template.yaml, the state machine and the handlers run on moto, as AWS runs them.

``python -m sandbox run`` (cli.py) plays a seller publishing a release (runner.py) against
the real stack deployed into moto's CloudFormation (stack.py) from a samconfig environment,
in the seller's region and account, and reports what a subscriber saw (report.py);
``python -m sandbox serve`` (serve.py) keeps it up for the real AWS CLI. moto serves AWS's
APIs on a loopback endpoint (server.py) that the Lambda workers and the CLI call; each
request is named and attributed to the caller's credentials (audit.py).

moto (pinned exactly) is extended only where it lacks what AWS does, each gap in its own
module, installed explicitly and undone afterwards (never at import time):

- extension.py      the install and undo every extension shares (``undo = ext.install()``, ``with ext:``)
- clock.py          Wait states and Retry back-offs advance a virtual clock instead of sleeping
- ext_lambda.py     Lambda functions run in worker processes forked from a Python 3.13 zygote
                    (lambda_bootstrap.py) holding only the runtime's SDK and the layer
                    (lambda_env.py): the template's Handler, Environment, Timeout, MemorySize,
                    role credentials per environment, parallel invocations, crash/timeout faults
- ext_stepfunctions.py  Step Functions calls other services as its role, in the stack's account
- ext_sqs.py        SQS event source mappings deliver from a background poller, not inside SendMessage
- ext_ecr.py        ECR stores and verifies blobs, serves GetDownloadUrlForLayer over
                    loopback HTTP, rejects manifests with missing blobs, emits push events,
                    scans images on the virtual clock; fault injection (corrupt-blob); a cap
                    on blob transfer rates (--bandwidth-mib-s)
- ecr_registry.py   ECR's registry endpoint (Docker Registry HTTP API v2 blob pushes) over
                    HTTPS, one per registry, for GetAuthorizationToken's proxyEndpoint; tls.py
                    makes its CA and certificate
- ext_sagemaker.py  model package validation runs on the virtual clock and ends Completed
                    or Failed with FailureReasons; name conflicts and deletion as in AWS;
                    CreateAlgorithm/DescribeAlgorithm/ListAlgorithms/DeleteAlgorithm (moto has
                    none), requests checked against botocore's model (sagemaker_requests.py)
- ext_catalog.py    the Marketplace Catalog API moto lacks (us-east-1): seeded ML products,
                    StartChangeSet (AddDeliveryOptions, UpdatePricingTerms, RestrictDeliveryOptions)
                    checked against botocore's model and the ML shapes, change sets on the virtual clock
- ext_events.py     EventBridge targets receive the whole event (moto drops ``account``)
- ext_s3.py         S3 copies answer 412 when ``x-amz-copy-source-if-match`` (or -if-unmodified-since)
                    does not hold; bucket policies conditioned on aws:SecureTransport see TLS requests;
                    copies take their bytes over --bandwidth-mib-s of real time
- stack.py          fills moto CloudFormation's gaps from the template's own properties
                    (DefinitionSubstitutions, S3 EventBridge notifications, executable
                    state machines)

Inputs: oci.py reads OCI image layouts (and skopeo ``dir:``) and pushes them like
``docker push``; imagebuild.py builds the demo image with umoci.
"""
