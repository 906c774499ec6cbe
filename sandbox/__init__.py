"""The local AWS: template.yaml, the state machine and the handlers run in-process on moto.

Each module holds one clearly separated piece (virtual time, in-process Lambda, ECR and
SageMaker behaviour moto lacks, ...). Extensions patch moto only when installed
explicitly, never at import time, so importing this package changes nothing.
"""
