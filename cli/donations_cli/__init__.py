"""`donations`: the operator CLI for the scheduled-donations job (seed, status, show, preview, redrive, pause,
resume, completion); docs/CLI.md describes each command.

It talks to the same MongoDB, DynamoDB lock table, SQS dead-letter queue and SSM pause switch as the
function, configured by the same environment variables (or a deployed stack's outputs with --stack).
"""
