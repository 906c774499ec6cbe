"""The local AWS: template.yaml, the state machine and the handlers run in-process on moto.

``python -m sandbox run`` (cli.py) plays a seller publishing a release (runner.py) against
the real stack deployed into moto's CloudFormation (stack.py) and reports what a subscriber
saw (report.py). moto (pinned exactly) is extended only where it lacks what AWS does, each
gap in its own module, installed explicitly and undone afterwards (never at import time):

- extension.py      the install and undo every extension shares (``undo = ext.install()``, ``with ext:``)
- clock.py          Wait states and Retry back-offs advance a virtual clock instead of sleeping
- ext_lambda.py     Lambda functions run their real handler in-process (moto needs Docker)
- ext_ecr.py        ECR stores and verifies blobs, serves GetDownloadUrlForLayer over
                    loopback HTTP, rejects manifests with missing blobs, emits push events,
                    scans images on the virtual clock; fault injection (corrupt-blob)
- ext_sagemaker.py  model package validation runs on the virtual clock and ends Completed
                    or Failed with FailureReasons; name conflicts and deletion as in AWS
- ext_events.py     EventBridge targets receive the whole event (moto drops ``account``)
- stack.py          fills moto CloudFormation's gaps from the template's own properties
                    (DefinitionSubstitutions, S3 EventBridge notifications, executable
                    state machines)

Inputs: oci.py reads OCI image layouts (and skopeo ``dir:``) and pushes them like
``docker push``; imagebuild.py builds the demo image with umoci.
"""
